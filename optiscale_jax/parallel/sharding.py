"""Where every parameter leaf lives: its PartitionSpec, its stored (padded) shape, its gather.

A strategy gives each parameter leaf a *model spec* (tensor or pipeline
sharding: hidden units over ``model``, layers over ``stage``; replicated
otherwise). Fully sharded data parallelism (``fsdp``, ZeRO-3) adds the ``data``
axis to one more dimension of every leaf with at least one dimension, so that
each device stores ``1 / (n_data x n_model)`` of it:

- the dimension is the one that gives the smallest per-device piece (ties: the
  longest dimension, then the last one);
- a dimension that ``model`` does not split is zero-padded to a multiple of
  ``n_data`` (the padding is sliced off after the gather, so it never enters
  the loss and the result is exact; it costs at most ``n_data - 1`` rows);
- a dimension that ``model`` already splits must divide by ``n_model x n_data``
  (a padded tail inside every model block would break the layout), else that
  dimension is not used; when no dimension is usable the error names the shape,
  the axis sizes and the fix.

Inside the ``shard_map`` of a loss, ``gather`` undoes the data split of one
leaf with ``lax.all_gather(..., 'data', tiled=True)`` (whose transpose under
``jax.grad`` is a reduce-scatter: gradients come back split like the
parameters) and drops the padding. A scalar leaf stays replicated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.mesh import DATA, MODEL, MeshLayout
from optiscale_jax.parallel.padding import padded_size


@dataclasses.dataclass(frozen=True)
class LeafLayout:
    """One parameter leaf on the mesh (a pytree leaf, not a node).

    Attributes:
      spec: the stored PartitionSpec (model spec plus the fsdp ``data`` entry).
      shape: the stored global shape (``true_shape`` zero-padded on ``fsdp_dim``).
      true_shape: the parameter's own shape.
      fsdp_dim: the dimension split over ``data`` by fsdp (None: not split over data).
      model_split: how many ``model`` blocks ``fsdp_dim`` is also split into (1 if none).
    """

    spec: P
    shape: tuple[int, ...]
    true_shape: tuple[int, ...]
    fsdp_dim: int | None = None
    model_split: int = 1

    @property
    def padded(self) -> bool:
        return self.shape != self.true_shape


def _entry_axes(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _with_data(entry: Any) -> Any:
    axes = _entry_axes(entry) + (DATA,)
    return axes[0] if len(axes) == 1 else axes


def plan_leaf(spec: P, shape: tuple[int, ...], layout: MeshLayout, fsdp: bool) -> LeafLayout:
    """The stored layout of a leaf of ``shape`` with model spec ``spec`` (see the module doc)."""
    shape = tuple(int(s) for s in shape)
    entries = tuple(spec) + (None,) * (len(shape) - len(tuple(spec)))
    n_data = layout.n_data
    if not fsdp or not shape:
        return LeafLayout(P(*entries), shape, shape)
    n_model = layout.n_second if layout.second_axis == MODEL else 1
    best = None
    for dim, size in enumerate(shape):
        model_split = n_model if (MODEL in _entry_axes(entries[dim]) and n_model > 1) else 1
        if model_split > 1:
            if size % (model_split * n_data):
                continue
            stored = size
        else:
            stored = padded_size(size, n_data)
        local = 1
        for other, other_size in enumerate(shape):
            split = model_split * n_data if other == dim else (
                n_model if MODEL in _entry_axes(entries[other]) and n_model > 1 else 1)
            local *= (stored if other == dim else other_size) // split
        key = (local, -size, -dim)
        if best is None or key < best[0]:
            best = (key, dim, stored, model_split)
    if best is None:
        raise ValueError(
            f"fsdp cannot split a parameter of shape {shape} over the data axis of size {n_data}: "
            f"every dimension is split over the model axis of size {n_model} and none is a "
            f"multiple of {n_model} x {n_data} = {n_model * n_data}; choose sizes (e.g. the MLP "
            f"width) that are multiples of {n_model * n_data}, or a smaller data axis")
    _, dim, stored, model_split = best
    new_entries = list(entries)
    new_entries[dim] = _with_data(entries[dim])
    stored_shape = shape[:dim] + (stored,) + shape[dim + 1:]
    return LeafLayout(P(*new_entries), stored_shape, shape, dim, model_split)


def plan_params(model_specs: Any, shapes: Any, layout: MeshLayout, fsdp: bool) -> Any:
    """``plan_leaf`` over a pytree: ``model_specs`` (PartitionSpecs) and ``shapes`` (tuples)
    share the parameters' structure; returns a pytree of ``LeafLayout``."""
    specs, treedef = jax.tree.flatten(model_specs, is_leaf=lambda x: isinstance(x, P))
    shape_leaves = treedef.flatten_up_to(shapes)
    return treedef.unflatten([plan_leaf(s, tuple(sh), layout, fsdp)
                              for s, sh in zip(specs, shape_leaves)])


def is_leaf_layout(x: Any) -> bool:
    return isinstance(x, LeafLayout)


def specs_of(plan: Any) -> Any:
    """The stored PartitionSpecs of a plan (the ``in_specs`` of a loss's shard_map)."""
    return jax.tree.map(lambda leaf: leaf.spec, plan, is_leaf=is_leaf_layout)


def shardings_of(plan: Any, layout: MeshLayout) -> Any:
    """``NamedSharding``s of a plan on the layout's mesh."""
    return jax.tree.map(lambda leaf: NamedSharding(layout.mesh, leaf.spec), plan,
                        is_leaf=is_leaf_layout)


def pad_to(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``x`` cut or zero-padded, dimension by dimension, to ``shape``."""
    x = x[tuple(slice(0, min(a, b)) for a, b in zip(x.shape, shape))]
    widths = [(0, b - a) for a, b in zip(x.shape, shape)]
    return jnp.pad(x, widths) if any(w for _, w in widths) else x


def pad_params(params: Any, plan: Any) -> Any:
    """Parameters in their true shapes -> stored shapes (zero padding)."""
    return jax.tree.map(lambda leaf, x: pad_to(jnp.asarray(x), leaf.shape), plan, params,
                        is_leaf=is_leaf_layout)


def unpad_params(params: Any, plan: Any) -> Any:
    """Stored parameters -> their true shapes (the padding dropped)."""
    return jax.tree.map(lambda leaf, x: x[tuple(slice(0, s) for s in leaf.true_shape)], plan,
                        params, is_leaf=is_leaf_layout)


def gather(x: jax.Array, leaf: LeafLayout, dim_offset: int = 0) -> jax.Array:
    """Inside shard_map: this device's piece of a leaf with the fsdp split undone.

    The result is the leaf's model block (or the whole leaf without model
    parallelism), padding removed. ``dim_offset`` = -1 for one slice of a
    stacked leaf taken inside a scan over its leading dimension.
    """
    if leaf.fsdp_dim is None:
        return x
    axis = leaf.fsdp_dim + dim_offset
    full = lax.all_gather(x, DATA, axis=axis, tiled=True)
    true_local = leaf.true_shape[leaf.fsdp_dim] // leaf.model_split
    if full.shape[axis] == true_local:
        return full
    return lax.slice_in_dim(full, 0, true_local, axis=axis)


def state_shardings(state_shapes: Any, params_shapes: Any, param_shardings: Any,
                    replicated: NamedSharding) -> Any:
    """Shardings of an optimizer state: every sub-tree shaped like the parameters
    (optax's moments, traces, accumulators) takes the parameters' shardings;
    every other leaf (step counts, scalars) is replicated."""
    params_def = jax.tree.structure(params_shapes)
    shapes = [tuple(leaf.shape) for leaf in jax.tree.leaves(params_shapes)]

    def like_params(node: Any) -> bool:
        if jax.tree.structure(node) != params_def:
            return False
        return [tuple(leaf.shape) for leaf in jax.tree.leaves(node)] == shapes

    return jax.tree.map(lambda node: param_shardings if like_params(node) else replicated,
                        state_shapes, is_leaf=like_params)
