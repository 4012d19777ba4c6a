"""Convex benchmark objectives with exact, cached optima.

``make_problem(kind, X, y, l2)`` builds a :class:`Problem` (least squares, ridge,
L2 logistic, L2 softmax) whose ``loss`` / ``grad`` / ``predict`` run on JAX,
NumPy or CuPy arrays and whose ``optimum()`` is solved once in float64 and
cached on disk.
"""

from optiscale_jax.problems._problem import Optimum, Problem, make_problem
from optiscale_jax.problems._validation import PROBLEM_KINDS

__all__ = ["Optimum", "PROBLEM_KINDS", "Problem", "make_problem"]
