"""A tiny policy with the pretrained text encoder learns two tasks and follows held-out rewordings.

Two instructions, each with its own action (+0.5 / -0.5 on every dimension; images and state are
noise, so only the words tell them apart), trained for 100 steps with the training augmentation
(configs/instructions/tabletop_augment.yaml, p=0.5). Then the actions are measured, with the flow
noise fixed, under the training wordings and under the held-out wordings of
configs/instructions/tabletop_heldout.yaml (never trained on). Seeds are fixed.
"""

from __future__ import annotations

import pytest
import torch

from _policy_helpers import STATS, tiny_config

CAM = ["observation.images.agentview"]
PAIRS = {
    "push": ("push the red cube to the left", "push the red cube to the right"),
    "bowl_vs_place": ("put the red cube in the bowl", "put the red cube on the blue plate"),
}


def train_two_tasks(encoder: str, tasks: tuple[str, str], steps: int = 100, seed: int = 0):
    from policies.configuration_vla import InstructionConfig, make_features
    from policies.modeling_vla import VLAPolicy
    from policies.processor_vla import make_vla_pre_post_processors
    from vla.instructions import InstructionSet, Paraphraser

    inputs, outputs = make_features(camera_keys=CAM, image_size=64)
    config = tiny_config("pool", camera_keys=CAM, input_features=inputs, output_features=outputs,
                         instruction=InstructionConfig(encoder=encoder))
    torch.manual_seed(seed)
    policy = VLAPolicy(config)
    pre, _ = make_vla_pre_post_processors(config, dataset_stats=STATS)
    augment = Paraphraser(InstructionSet.load("configs/instructions/tabletop_augment.yaml"), p=0.5)
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    policy.train()
    for _ in range(steps):
        which = torch.randint(0, 2, (16,), generator=g)
        batch = {CAM[0]: torch.rand(16, 3, 64, 64, generator=g), "observation.state": torch.randn(16, 8, generator=g),
                 "task": augment([tasks[i] for i in which.tolist()], g)}
        sign = 1.0 - 2.0 * which.float()  # task 0 -> +0.5, task 1 -> -0.5 (raw; std 0.5 -> +-1 normalised)
        batch["action"] = (0.5 * sign)[:, None, None].expand(16, config.chunk_size, 7).clone()
        loss, _ = policy(pre(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    return policy, pre


def mean_action(policy, pre, wording: str, n: int = 8) -> float:
    g = torch.Generator().manual_seed(123)
    batch = {CAM[0]: torch.rand(n, 3, 64, 64, generator=g), "observation.state": torch.randn(n, 8, generator=g),
             "task": [wording] * n}
    noise = torch.zeros(n, policy.config.chunk_size, 7)
    return float(policy.predict_action_chunk(pre(batch), noise=noise).mean())


_TRAINED: dict[str, tuple] = {}


def trained_pair(pair: str):
    if pair not in _TRAINED:
        _TRAINED[pair] = train_two_tasks("minilm", PAIRS[pair])
    return _TRAINED[pair]


@pytest.mark.parametrize("pair", list(PAIRS))
def test_text_encoder_policy_separates_two_tasks_and_their_heldout_rewordings(pair):
    from vla.instructions import InstructionSet

    tasks = PAIRS[pair]
    policy, pre = trained_pair(pair)
    held = InstructionSet.load("configs/instructions/tabletop_heldout.yaml")
    report = {}
    for sign, task in zip((1, -1), tasks):
        trained = mean_action(policy, pre, task)
        assert sign * trained > 0.5, (task, trained)  # normalised targets are +-1
        wordings = held.wordings(task)
        assert len(wordings) >= 3
        scores = {w: mean_action(policy, pre, w) for w in wordings}
        report[task] = scores
        right = [w for w, v in scores.items() if sign * v > 0.3]
        assert len(right) >= len(wordings) - 1, (task, scores)  # measured: 4/4 and 3/4 (push: the passive)
        assert sign * scores[wordings[0]] > 0.3, (wordings[0], scores)  # the synonym rewording of each
    print(pair, report)


def test_probe_reports_the_action_change_per_heldout_wording():
    """`vla probe wordings=...` on the trained pair: rewordings act like their own task, not the other."""
    from vla.instructions import InstructionSet
    from vla.probe import wording_sensitivity

    policy, pre = trained_pair("bowl_vs_place")
    tasks = list(PAIRS["bowl_vs_place"])
    g = torch.Generator().manual_seed(5)
    frames = [{CAM[0]: torch.rand(6, 3, 64, 64, generator=g), "observation.state": torch.randn(6, 8, generator=g),
               "task": [tasks[0]] * 3 + [tasks[1]] * 3}]
    held = InstructionSet.load("configs/instructions/tabletop_heldout.yaml")
    report = wording_sensitivity(policy, pre, frames, tasks, {t: held.wordings(t) for t in tasks})
    assert len(report["rows"]) == 8 and all(r["frames"] == 3 for r in report["rows"])
    assert report["mean_reads_as_own_task"] >= 0.9 and report["mean_relative_change"] < 0.2
    gibberish = wording_sensitivity(policy, pre, frames, tasks, {tasks[0]: [tasks[1]]})["rows"][0]
    assert gibberish["relative_change"] == pytest.approx(1.0) and gibberish["reads_as_own_task"] == 0.0
