"""Normalisation guards: a near-constant demo dimension must not amplify test-time noise."""

import numpy as np
import torch

from policies.processor_vla import MIN_NORM_STD, floor_std


def test_std_is_floored_and_everything_else_kept():
    stats = {
        "observation.state": {"mean": np.zeros(3), "std": np.array([0.5, 1e-5, 0.0]), "min": np.full(3, -1.0)},
        "action": {"mean": np.ones(2), "std": np.array([0.2, 0.3])},
    }
    out = floor_std(stats)
    torch.testing.assert_close(out["observation.state"]["std"], torch.tensor([0.5, MIN_NORM_STD, MIN_NORM_STD]))
    torch.testing.assert_close(out["action"]["std"], torch.tensor([0.2, 0.3]))
    np.testing.assert_array_equal(out["observation.state"]["min"], stats["observation.state"]["min"])
    assert stats["observation.state"]["std"][1] == 1e-5  # the caller's stats are not modified
    # 20 mrad of roll noise on a dimension that never moved in the demos stays a modest input
    noise = 2e-2
    assert abs(noise / out["observation.state"]["std"][1].item()) <= 1.0
    assert floor_std(None) is None
