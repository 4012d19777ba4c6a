"""Convex benchmark objectives with exact, cached optima.

``make_problem(kind, X, y, l2)`` builds a :class:`Problem` (least squares, ridge,
L2 logistic, L2 softmax) whose ``loss`` / ``grad`` / ``predict`` run on JAX,
NumPy or CuPy arrays and whose ``optimum()`` is solved once in float64 and
cached on disk with its certificate; ``solvers`` holds the solvers themselves.
"""

from optiscale_jax.problems import solvers
from optiscale_jax.problems._problem import Optimum, Problem, make_problem
from optiscale_jax.problems._protocol import ProblemLike
from optiscale_jax.problems._validation import PROBLEM_KINDS, finite_matrix, finite_vector

__all__ = ["Optimum", "PROBLEM_KINDS", "Problem", "ProblemLike", "finite_matrix", "finite_vector",
           "make_problem", "solvers"]
