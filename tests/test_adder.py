"""The adder layer (AdderNet, AdderSR): its op against the naive definition and AdderNet's gradient formulas, the
compiled CPU kernels against the reference, the power activation, the layer, and the ``Adder`` wrapper."""
import copy
import math
import shutil

import pytest
import torch
from basicsr.archs import build_network
from torch.nn import functional as F

from ghostsr_plugin import ops
from ghostsr_plugin.archs import AdderConv2d, adder_layers
from ghostsr_plugin.archs.adder_layer import PowerActivation
from ghostsr_plugin.cost import model_cost
from ghostsr_plugin.op_count import count_ops
from ghostsr_plugin.ops import adder_reference, cpu_kernels
from ghostsr_plugin.option_check import OptionError, check_network_options

# (N, C, H, W, O, k, padding): row tails, one column, k = 1 and 5, a block of output channels and a rest
SHAPES = [(2, 3, 5, 7, 5, 3, 1), (1, 8, 6, 19, 6, 3, 1), (2, 4, 6, 6, 4, 5, 2), (1, 2, 3, 1, 3, 1, 0)]


def naive(x, weight, padding):
    """The definition written out: unfold, then -sum |column - filter| for every filter."""
    n, _, h, w = x.shape
    o, _, k, _ = weight.shape
    columns = F.unfold(x, k, padding=padding)  # (N, C k k, L)
    out = -(columns[:, None] - weight.reshape(o, -1)[None, :, :, None]).abs().sum(2)
    return out.reshape(n, o, h + 2 * padding - k + 1, w + 2 * padding - k + 1)


def addernet_gradients(grad, x, weight, padding):
    """The official code's backward (adder.py) on unfolded columns, without the adaptive scale."""
    n, _, h, w = x.shape
    o = weight.shape[0]
    columns = F.unfold(x, weight.shape[-1], padding=padding)  # (N, C k k, L)
    filters = weight.reshape(o, -1)[None, :, :, None]
    g = grad.reshape(n, o, 1, -1)
    grad_weight = ((columns[:, None] - filters) * g).sum((0, 3)).reshape(weight.shape)
    grad_columns = ((filters - columns[:, None]).clamp(-1, 1) * g).sum(1)
    return F.fold(grad_columns, (h, w), weight.shape[-1], padding=padding), grad_weight


def integers(*shape, low=-4, high=5):
    """Small integers in float64: every sum is exact, whatever the order."""
    return torch.randint(low, high, shape).double()


PATHS = {  # the op (the compiled kernels on this CPU) and the pure-PyTorch reference: (forward, backward)
    'op': (ops.adder2d, lambda g, x, w, p: torch.ops.ghostsr.adder2d_backward(g, x, w, p)),
    'reference': (adder_reference.adder2d, adder_reference.adder2d_backward),
}


@pytest.fixture(params=[(path, shape) for path in PATHS for shape in SHAPES], ids=str)
def case(request):
    """``(forward, backward, shape)`` of one path at one shape."""
    path, shape = request.param
    return (*PATHS[path], shape)


def test_the_compiled_cpu_kernels_build_and_pass_their_self_check():
    if shutil.which('c++') is None and shutil.which('g++') is None:
        pytest.skip('no C++ compiler here')
    assert cpu_kernels.active(), cpu_kernels.status()[1]


def test_output_equals_the_definition(case):
    forward, _, (n, c, h, w, o, k, padding) = case
    torch.manual_seed(0)
    x, weight = integers(n, c, h, w), integers(o, c, k, k)
    assert torch.equal(forward(x, weight, padding), naive(x, weight, padding))  # exactly, in float64
    x, weight = torch.randn(n, c, h, w), torch.randn(o, c, k, k)
    got, want = forward(x, weight, padding), naive(x.double(), weight.double(), padding)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_gradients_are_addernets(case):
    _, backward, (n, c, h, w, o, k, padding) = case
    torch.manual_seed(1)
    x, weight = integers(n, c, h, w), integers(o, c, k, k)  # (some |w - x| below, at and above 1)
    grad = integers(n, o, h + 2 * padding - k + 1, w + 2 * padding - k + 1, low=-3, high=4)
    grad_x, grad_weight = backward(grad, x, weight, padding)
    want_x, want_weight = addernet_gradients(grad, x, weight, padding)
    assert torch.equal(grad_x, want_x) and torch.equal(grad_weight, want_weight)


def test_autograd_runs_addernets_rule_and_the_adaptive_scale():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    ops.adder2d(x, ops.adaptive_gradient(weight, 0.2), 1).backward(grad)
    want_x, want_weight = addernet_gradients(grad, x.detach(), weight.detach(), 1)
    torch.testing.assert_close(x.grad, want_x)
    # AdderNet's adaptive learning rate as its code applies it: the gradient to norm eta * sqrt(k), k = 4 * 3 * 3 * 3
    torch.testing.assert_close(weight.grad, want_weight / want_weight.norm() * 0.2 * math.sqrt(108))


@pytest.mark.parametrize('sample', range(4))
def test_opcheck(sample):
    torch.manual_seed(sample)
    t = torch.randn
    samples = [
        (torch.ops.ghostsr.adder2d, (t(2, 3, 5, 6, requires_grad=True), t(4, 3, 3, 3, requires_grad=True), 1)),
        (torch.ops.ghostsr.adder2d, (t(1, 2, 4, 3, dtype=torch.float64), t(3, 2, 1, 1, dtype=torch.float64), 0)),
        (torch.ops.ghostsr.adder2d_backward, (t(2, 4, 5, 6), t(2, 3, 5, 6), t(4, 3, 3, 3), 1)),
        (torch.ops.ghostsr.adder2d, (t(1, 2, 7, 5), t(2, 2, 5, 5), 1)),  # a smaller output than the input
    ]
    torch.library.opcheck(*samples[sample])


@pytest.mark.parametrize('call, message', [
    (lambda: ops.adder2d(torch.zeros(1, 3, 4, 4), torch.zeros(2, 4, 3, 3), 1), r'weight must be \(O, 3, k, k\)'),
    (lambda: ops.adder2d(torch.zeros(3, 4, 4), torch.zeros(2, 3, 3, 3), 1), 'x must have 4 dimensions'),
    (lambda: ops.adder2d(torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 3, 3).double(), 1), 'weight must be '
                                                                                       'torch.float32'),
    (lambda: ops.adder2d(torch.zeros(1, 3, 2, 2), torch.zeros(2, 3, 5, 5), 1), 'a 5x5 window does not fit'),
    (lambda: ops.adder2d(torch.zeros(1, 3, 4, 4, dtype=torch.long), torch.zeros(2, 3, 3, 3), 1), 'floating-point'),
])
def test_bad_arguments_are_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert str(error.value).startswith('ghostsr::adder2d: ') and '\n' not in str(error.value)


def test_power_activation_passes_gradcheck_and_stays_finite_at_zero():
    act = PowerActivation(alpha=0.7).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    x = x + x.sign() * 0.1  # (|x|^alpha is not differentiable at 0)
    assert torch.autograd.gradcheck(lambda t, a: torch.sign(t) * t.abs().pow(a), (x.requires_grad_(),
                                    act.alpha.detach().clone().requires_grad_()))
    assert torch.autograd.gradcheck(act, (x,))
    torch.testing.assert_close(act(x), x.sign() * x.abs() ** 0.7)
    at_zero = torch.zeros(3, requires_grad=True)
    out = PowerActivation(alpha=0.5)(at_zero)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(3)) and torch.isfinite(at_zero.grad).all()


def test_the_layer_is_addersrs_unit():
    """P(BN(A(x)) + x) where channels match, P(BN(A(x))) where they do not; eval and training batch norm."""
    torch.manual_seed(3)
    x = torch.randn(2, 4, 6, 5)
    for layer, shortcut in ((AdderConv2d(4, 4), True), (AdderConv2d(4, 6), False)):
        with torch.no_grad():
            layer.power.alpha.fill_(0.8)
        for training in (True, False):
            layer.train(training)
            norm = F.batch_norm(naive(x, layer.weight.detach(), 1), layer.norm.running_mean.clone(),
                                layer.norm.running_var.clone(), layer.norm.weight, layer.norm.bias, training)
            y = norm + x if shortcut else norm
            torch.testing.assert_close(layer(x), torch.sign(y) * y.abs() ** 0.8, rtol=1e-5, atol=1e-5)


def test_a_half_precision_layer_sums_and_normalizes_in_float32():
    """Its sums of 9c distances of features in the hundreds outgrow float16 (65504), and so do their batch norm
    statistics: a half model (inference) keeps the batch norm in float32 and sums there, so it stays finite and
    close to the float one; moving it to a device still moves the batch norm."""
    torch.manual_seed(4)
    layer = AdderConv2d(32, 32).eval()
    with torch.no_grad():
        layer.norm.running_mean.fill_(-1.2e5)
        layer.norm.running_var.fill_(1e8)
    x = 800 * torch.rand(1, 32, 6, 6)
    assert not torch.isfinite(ops.adder2d(x.half(), layer.weight.half(), 1)).all()  # (the op in float16 overflows)
    with torch.no_grad():
        full = layer(x)
        half = copy.deepcopy(layer).half()
        assert half.weight.dtype == torch.float16 and half.norm.running_var.dtype == torch.float32
        torch.testing.assert_close(half(x.half()).float(), full, rtol=1e-2, atol=1e-2)
        assert half.float().norm.running_var.dtype == torch.float32 and half.to('meta').norm.weight.is_meta


def test_an_adder_layer_counts_additions_only():
    layer = AdderConv2d(4, 4, power_activation=False, shortcut=False).eval()
    x = torch.rand(1, 4, 5, 6)
    ops_count = count_ops(lambda t: ops.adder2d(t, layer.weight, 1), x)
    assert (ops_count.mults, ops_count.adds) == (0, 4 * 30 * (2 * 36 - 1))  # K = 4 * 3 * 3 terms per output
    cost = model_cost(layer, x)
    assert cost['mults'] == 4 * 30 and cost['adds'] == 4 * 30 * (2 * 36 - 1) + 4 * 30  # and the folded batch norm
    assert cost['flops'] == 2 * 4 * 30 * 36


EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2}


def test_the_wrapper_converts_exactly_edsrs_body_convs():
    torch.manual_seed(0)
    net = build_network({'type': 'Adder', 'base': EDSR})
    converted = [name for name, m in net.named_modules() if isinstance(m, AdderConv2d)]
    assert converted == [f'body.{b}.conv{c}' for b in range(2) for c in (1, 2)]
    assert all(layer.shortcut for layer in adder_layers(net))
    plain = [name for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert plain == ['conv_first', 'conv_after_body', 'upsample.0', 'conv_last']  # multiplications, as AdderSR
    assert net(torch.rand(1, 3, 6, 7)).shape == (1, 3, 12, 14)


@pytest.mark.parametrize('section, fragments', [
    ({'type': 'Adder', 'base': {'type': 'CARN_M', 'num_in_ch': 3, 'num_out_ch': 3}},
     ["key 'network_g.convert'", 'CARN_M has no body conv by the rule of convert: body']),
    ({'type': 'Adder', 'base': EDSR, 'convert': ['body.*.conv3']},
     ["key 'network_g.convert'", "pattern 'body.*.conv3' matches no conv of EDSR"]),
    ({'type': 'Adder', 'base': {'type': 'CARN_M', 'num_in_ch': 3, 'num_out_ch': 3},
      'convert': ['body.units.0.units.0.conv1']}, ["key 'network_g.convert'", 'the Adder layer needs groups 1']),
    ({'type': 'Adder', 'base': EDSR, 'eta': -1}, ["key 'network_g.eta'", 'expected a number >= 0, found -1']),
    ({'type': 'Adder', 'base': {'type': 'Ghost', 'base': EDSR}}, ["key 'network_g.base'", 'base is itself a wrapper '
                                                                                          '(Ghost)']),
    ({'type': 'Ghost', 'base': {'type': 'Adder', 'base': EDSR}}, ["key 'network_g.base'", 'base is itself a wrapper '
                                                                                          '(Adder)']),
])
def test_bad_adder_sections_fail_naming_the_option(section, fragments):
    with pytest.raises(OptionError) as error:
        check_network_options('x.yml', {'network_g': section})
    for fragment in fragments:
        assert fragment in str(error.value)
    assert '\n' not in str(error.value)
