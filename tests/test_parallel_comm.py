"""Communication volume read from compiled HLO, against volumes computed by hand."""

import jax
import jax.numpy as jnp
import pytest
from jax import lax
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.hlo_comm import collective_volume


def test_gather_in_a_scan_and_a_psum_on_eight_devices():
    """An all-gather of a (64, 16) float32 result 3 times in a scan: each device receives
    7/8 of 4 KiB each time; one psum of its (8, 16) block: 2 x 7/8 x 512 B."""
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))

    def local(x):
        def body(c, _):
            return c + jnp.sum(lax.all_gather(x * c, "data", axis=0, tiled=True)), None

        c, _ = lax.scan(body, lax.pcast(jnp.zeros(()), ("data",), to="varying"), None, length=3)
        return lax.psum(x * c, "data")

    program = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=P()))
    volume = collective_volume(program.lower(jnp.ones((64, 16))).compile().as_text())
    assert volume.count_by_kind["all-gather"] == 3 and volume.count_by_kind["all-reduce"] == 1
    assert volume.bytes_by_kind["all-gather"] == 3 * 64 * 16 * 4 * 7 / 8
    assert volume.bytes_by_kind["all-reduce"] == 2 * 8 * 16 * 4 * 7 / 8
    assert volume.total_bytes == pytest.approx(3 * 3584 + 896)


HLO = """
%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %rs = f32[4]{0} reduce-scatter(f32[16]{0} %x), channel_id=1, replica_groups=[2,4]<=[8], dimensions={0}
  %w = (s32[], f32[4]) while(%t), condition=%cond, body=%inner, backend_config={"known_trip_count":{"n":"5"}}
}
%inner (q: (s32[], f32[4])) -> (s32[], f32[4]) {
  %cp = f32[2,2]{1,0} collective-permute(%y), channel_id=2, source_target_pairs={{0,1},{1,0}}
  %ar = f32[10]{0} all-reduce(%z), channel_id=3, replica_groups=mesh['a'=2,'b'=4] {'a'}, to_apply=%add
  %no = f32[10]{0} all-reduce(%z), channel_id=4, replica_groups={{0},{1}}, to_apply=%add
  %ids = f32[10]{0} all-reduce(%z), replica_groups=mesh['a'=2,'b'=4], device_ids=([4,2]T(1,0)) {'b'}
}
ENTRY %main (a: f32[4]) -> f32[4] {
  %loop = (s32[], f32[4]) while(%t0), condition=%c, body=%body, backend_config={"known_trip_count":{"n":"3"}}
}
"""


def test_nested_loops_group_forms_and_singleton_groups():
    volume = collective_volume(HLO)
    assert volume.count_by_kind == {"all-gather": 0, "reduce-scatter": 3, "all-reduce": 30,
                                    "all-to-all": 0, "collective-permute": 15}
    assert volume.bytes_by_kind["reduce-scatter"] == 3 * 16 * 3          # B (g-1), g = 4
    assert volume.bytes_by_kind["all-reduce"] == 15 * 2 * 40 * (1 / 2 + 3 / 4)  # groups of 2 and 4
    assert volume.bytes_by_kind["collective-permute"] == 15 * 16
    with pytest.raises(ValueError, match="no ENTRY"):
        collective_volume("%f (x: f32[]) -> f32[] {\n}\n")
