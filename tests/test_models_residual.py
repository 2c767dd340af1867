"""models.ResidualMLP, the deep network of the skip-connection comparisons (chapters 03 and 04): the skip is the only
difference between the two networks, the forward pass is the documented block, bad sizes raise ValueError."""
import pytest
import torch

from dldna_lite import models


def test_skip_and_no_skip_share_the_initialization():
    torch.manual_seed(0)
    a = models.ResidualMLP(width=8, depth=3, skip=True, in_features=20, num_classes=4)
    torch.manual_seed(0)
    b = models.ResidualMLP(width=8, depth=3, skip=False, in_features=20, num_classes=4)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert models.count_parameters(a) == 20 * 8 + 8 + 3 * 2 * (8 * 8 + 8) + 8 * 4 + 4


def test_forward_is_the_documented_block_with_and_without_the_skip():
    torch.manual_seed(0)
    a = models.ResidualMLP(width=8, depth=3, skip=True, in_features=20, num_classes=4)
    b = models.ResidualMLP(width=8, depth=3, skip=False, in_features=20, num_classes=4)
    b.load_state_dict(a.state_dict())                                   # same parameters, different function
    X = torch.randn(64, 20, generator=torch.Generator().manual_seed(1))
    assert a(X).shape == (64, 4) and a(X.view(64, 1, 4, 5)).shape == (64, 4)
    h = torch.relu(a.stem(X))
    ref_skip, ref_plain = h, h
    for blk in a.blocks:
        W1, W2 = blk[0], blk[2]
        ref_skip = torch.relu(ref_skip + W2(torch.relu(W1(ref_skip))))
        ref_plain = torch.relu(W2(torch.relu(W1(ref_plain))))
    torch.testing.assert_close(a(X), a.head(ref_skip))
    torch.testing.assert_close(b(X), a.head(ref_plain))
    assert not torch.allclose(a(X), b(X))


@pytest.mark.parametrize("kwargs", [dict(width=8, depth=0), dict(width=0, depth=2), dict(width=8.0, depth=2),
                                    dict(width=8, depth=2, num_classes=0), dict(width=8, depth=2, skip="yes")])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="positive ints|skip must be"):
        models.ResidualMLP(**kwargs)


def test_sizes_are_keyword_only():
    with pytest.raises(TypeError):
        models.ResidualMLP(8, 2)


@pytest.mark.parametrize("skip", [True, False])
def test_sequential_view_is_the_same_function_on_the_same_parameters(skip):
    torch.manual_seed(0)
    net = models.ResidualMLP(width=8, depth=3, skip=skip, in_features=20, num_classes=4)
    view = net.as_sequential()
    X = torch.randn(16, 1, 4, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(view(X), net(X))
    assert {id(p) for p in view.parameters()} == {id(p) for p in net.parameters()}     # shared, not copied
    assert list(net.state_dict()) == list(models.ResidualMLP(width=8, depth=3, in_features=20, num_classes=4)
                                          .state_dict())                             # no new names


@pytest.mark.parametrize("skip", [True, False])
def test_scan_of_a_residual_mlp_takes_the_first_layer_path_and_agrees_with_the_plain_one(skip):
    """The scan engine reads the view: the stem comes from the three precomputed products (fast path), the blocks run
    under vmap; the losses agree with the engine's path without the fast path to float32 rounding."""
    from dldna_lite import landscape

    torch.manual_seed(0)
    net = models.ResidualMLP(width=16, depth=3, skip=skip, in_features=20, num_classes=4)
    gen = torch.Generator().manual_seed(2)
    data = (torch.randn(200, 20, generator=gen), torch.randint(0, 4, (200,), generator=gen))
    plane = landscape.random_plane(net, generator=torch.Generator().manual_seed(3))
    d1, d2 = (landscape.unflatten(net, d) for d in plane)
    ev = landscape.point_evaluator(net, data, [d1, d2])
    assert ev.path == "first-layer+vmap"
    grid = torch.cartesian_prod(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 5)).numpy()
    loss, acc = ev.batch(grid)
    ref_loss, ref_acc = landscape.point_evaluator(net, data, [d1, d2], fast=False).batch(grid)
    assert landscape.point_evaluator(net, data, [d1, d2], fast=False).path == "vmap"
    assert abs(loss - ref_loss).max() < 1e-5 * max(1.0, abs(ref_loss).max())
    assert abs(acc - ref_acc).max() <= 1 / 200         # a tie at the decision boundary may flip one image
