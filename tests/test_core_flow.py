"""Known-answer tests of the path, the solvers, the codec and classifier-free guidance."""
import math

import pytest
import torch

from driftsketch import codec
from driftsketch.guidance import GuidedVelocity
from driftsketch.path import interpolate, target_velocity
from driftsketch.solver import integrate


def test_path_endpoints_are_noise_and_data():
    x0, x1 = torch.randn(5, 32, 8), torch.rand(5, 32, 8)
    assert torch.equal(interpolate(x0, x1, torch.zeros(5)), x0)
    assert torch.allclose(interpolate(x0, x1, torch.ones(5)), x1)
    mid = interpolate(x0, x1, torch.full((5,), 0.25))
    assert torch.allclose(mid, 0.75 * x0 + 0.25 * x1)


def test_target_velocity_integrates_path_exactly():
    x0, x1 = torch.randn(3, 32, 8), torch.randn(3, 32, 8)
    v = target_velocity(x0, x1)
    out = integrate(lambda x, t: v, x0, num_steps=7, solver="euler")
    assert torch.allclose(out, x1, atol=1e-5)


@pytest.mark.parametrize("solver,steps,tol", [("euler", 200, 2e-2), ("midpoint", 20, 1e-3), ("heun", 20, 2e-3)])
def test_solvers_on_velocity_with_known_integral(solver, steps, tol):
    # dx/dt = 3 t^2  =>  x(1) = x(0) + 1
    x0 = torch.zeros(4, 2)
    out = integrate(lambda x, t: 3 * t[:, None] ** 2 * torch.ones_like(x), x0, steps, solver)
    assert torch.allclose(out, torch.ones_like(x0), atol=tol)


def test_midpoint_is_second_order():
    # dx/dt = x  =>  x(1) = e; halving the step cuts the error ~4x for a 2nd-order method
    errs = [abs(integrate(lambda x, t: x, torch.ones(1, 1), n, "midpoint").item() - math.e) for n in (10, 20)]
    assert 3.5 < errs[0] / errs[1] < 4.5


def test_unknown_solver_rejected():
    with pytest.raises(ValueError, match="unknown solver"):
        integrate(lambda x, t: x, torch.ones(1, 1), 2, "rk99")


@pytest.mark.parametrize("name", codec.CODECS)
def test_codec_round_trip(name):
    x = torch.rand(6, 32, 8) * 2 - 1
    assert torch.allclose(codec.decode(codec.encode(x, name), name), x, atol=1e-6)


def test_relative_codec_makes_connection_a_zero_gap():
    p = torch.rand(1, 32, 4, 2) * 2 - 1
    p[:, 1:, 0] = p[:, :-1, 3]  # every segment starts where the previous one ended
    z = codec.encode(p.flatten(2), "relative").unflatten(-1, (4, 2))
    assert torch.all(z[:, 1:, 0] == 0)


def test_snap_joins_only_small_gaps():
    p = torch.rand(1, 32, 4, 2) * 2 - 1
    p[:, 1:, 0] = p[:, :-1, 3]
    p[0, 5, 0] += 0.01  # a tiny gap: snapped
    p[0, 9, 0] += 0.5  # a pen-up: kept
    out = codec.decode(codec.encode(p.flatten(2), "relative"), "relative", snap_eps=0.03).unflatten(-1, (4, 2))
    assert torch.allclose(out[0, 5, 0], p[0, 4, 3], atol=1e-6)
    assert torch.allclose(out[0, 9, 0], p[0, 9, 0], atol=1e-6)


class _Affine(torch.nn.Module):
    null_class = 2

    def forward(self, x, t, labels):
        return torch.where(labels[:, None, None] == self.null_class, torch.zeros_like(x), torch.ones_like(x))


def test_guidance_scales_conditional_minus_unconditional():
    v = GuidedVelocity(_Affine(), torch.tensor([0, 1]), cfg_scale=3.0)
    out = v(torch.zeros(2, 32, 8), torch.zeros(2))
    assert torch.allclose(out, torch.full_like(out, 3.0))
