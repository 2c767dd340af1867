"""dldna_lite.landscape.flat: flat vectors and back, against torch.nn.utils."""
import pytest
import torch

from dldna_lite import landscape as L
from dldna_lite import models


def test_unflatten_round_trip_and_size_check():
    model = models.mlp([5, 4, 3])
    parts = L.unflatten(model, L.flat_params(model))
    for p, q in zip(model.parameters(), parts):
        torch.testing.assert_close(p.detach(), q)
    with pytest.raises(ValueError, match="trainable"):
        L.unflatten(model, torch.zeros(3))


def test_flatten_split_and_set_flat_agree_with_torch_utils():
    torch.manual_seed(0)
    model = models.mlp([5, 4, 3])
    vector = torch.nn.utils.parameters_to_vector(model.parameters())
    torch.testing.assert_close(L.flat_params(model), vector)
    torch.testing.assert_close(L.flatten(list(model.parameters())).detach(), vector)
    for p, q in zip(model.parameters(), L.split(vector, list(model.parameters()))):
        torch.testing.assert_close(p.detach(), q)
    other = models.mlp([5, 4, 3])
    assert L.set_flat(other, vector) is other
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(other.parameters()), vector)
    names = [n for n, _ in model.named_parameters()]
    assert list(L.param_dict(model, 2 * vector)) == names
    with pytest.raises(ValueError, match="entries"):
        L.split(torch.zeros(2), list(model.parameters()))


def test_frozen_parameters_are_left_out_of_flat_vectors():
    model = models.mlp([5, 4, 3])
    model[1].weight.requires_grad_(False)
    P = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert L.flat_params(model).numel() == P
    full = L.full_direction(model, torch.ones(P))
    assert torch.count_nonzero(full[0]) == 0 and all(torch.all(t == 1) for t in full[1:])
