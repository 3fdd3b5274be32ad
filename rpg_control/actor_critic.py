"""Gaussian actor, value critic and the running observation normalizer.

The actor is N(μθ(s), σ²) with σ either one global, state-independent parameter vector (the
paper's default, Sec. IV-A) or a state-dependent head (Table III's ablation). ``log_prob`` is
the log *density* of the sampling distribution — the log πθ of the Soft/Residual reward (eq. 5,
eq. 8) for continuous actions. Actions are sampled unclipped; the env receives them clipped to
its bounds (the log-prob stays that of the sample).

The networks are plain ``nn.Sequential`` stacks of ``nn.Linear`` and an activation (their
``state_dict`` keys are those of every checkpoint), but the forward runs through
:func:`mlp_forward`: the same layers computed with fewer, fused kernels and, under autograd, one
hand-written backward (see ``docs/control_speed.md``). It equals the module forward to float
rounding (tanh as 2·σ(2z) − 1: ≤ 2·10⁻⁷ from ``torch.tanh``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


_SIGMOID_TANH_MIN = 12288  # elements; below it the four-kernel form loses to one tanh


def _tanh_(z: torch.Tensor) -> torch.Tensor:
    """tanh in place; on large tensors as 2·σ(2z) − 1: torch's CPU tanh goes through MKL's VML,
    which on AMD cores is ~2× slower than four passes of sigmoid and scaling. The identity is
    exact, the rounding ≤ 2·10⁻⁷ absolute."""
    if z.numel() < _SIGMOID_TANH_MIN:
        return z.tanh_()
    return z.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _activate_(name: str, z: torch.Tensor) -> torch.Tensor:
    if name == "tanh":
        return _tanh_(z)
    if name == "relu":
        return z.relu_()
    return torch.nn.functional.elu_(z)


def _activation_backward(name: str, grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """d loss / d pre-activation from d loss / d activation and the activation's output, written
    over ``grad`` (a pointwise map: in place is exact, and saves a fresh tensor per layer)."""
    if name == "tanh":
        return torch.ops.aten.tanh_backward.grad_input(grad, out, grad_input=grad)
    if name == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0.0, grad_input=grad)
    return torch.ops.aten.elu_backward.grad_input(grad, 1.0, 1.0, 1.0, True, out, grad_input=grad)


_ACTIVATION_NAMES = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.ELU: "elu"}


def _mlp_layers(net: nn.Module) -> tuple[str, list[nn.Linear], int] | None:
    """(activation, linears, widest hidden layer) of an ``mlp()`` stack — Linear, act, …, Linear — else None."""
    if not isinstance(net, nn.Sequential):
        return None
    modules = list(net)
    linears, acts = modules[0::2], modules[1::2]
    if not linears or len(linears) != len(acts) + 1 or not all(type(m) is nn.Linear for m in linears):
        return None
    names = {_ACTIVATION_NAMES.get(type(m)) for m in acts}
    if len(names) > 1 or None in names or any(type(m) is nn.ELU and m.alpha != 1.0 for m in acts):
        return None
    if any(m.bias is None for m in linears):
        return None
    return (names.pop() if names else "tanh"), linears, max((m.out_features for m in linears[:-1]), default=0)


_MINUS_ONE = torch.tensor(-1.0)


def _linear_activate(activation: str, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """activation(h Wᵀ + b), the bias inside the GEMM. A large tanh layer as 2·σ(2z) − 1 in two
    passes after the GEMM: the 2z from the GEMM itself (``addmm`` with α = β = 2, a power of two,
    so bit-equal to doubling z afterwards), then ``sigmoid_`` and −1 + 2·s in one ``add``."""
    if activation == "tanh" and h.dim() == 2 and h.shape[0] * weight.shape[0] >= _SIGMOID_TANH_MIN:
        s = torch.addmm(bias, h, weight.t(), beta=2.0, alpha=2.0).sigmoid_()
        return torch.add(_MINUS_ONE, s, alpha=2.0, out=s)
    return _activate_(activation, F.linear(h, weight, bias))


def mlp_forward_layers(activation: str, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Every layer's output [h1, …, out]: addmm (bias in the GEMM) then the activation in place."""
    outputs, h, last = [], x, len(params) - 2
    for i in range(0, len(params), 2):
        if i < last:
            h = _linear_activate(activation, h, params[i], params[i + 1])
        else:
            h = F.linear(h, params[i], params[i + 1])  # one addmm, the bias in the GEMM
        outputs.append(h)
    return outputs


def mlp_backward(
    activation: str,
    x: torch.Tensor,
    params: tuple[torch.Tensor, ...],
    outputs: list[torch.Tensor],
    grad: torch.Tensor,
    needs: tuple[bool, ...] | None = None,
    out: list[torch.Tensor | None] | None = None,
) -> tuple[list[torch.Tensor | None], torch.Tensor | None]:
    """The chain rule of an MLP written out: from d loss / d output and the layer outputs of
    :func:`mlp_forward_layers`, (gradients of ``params`` in their order, d loss / d x).

    Per layer dW = gᵀh, db = Σg, dh = gW, then the activation's backward on its saved output.
    ``needs`` (one flag for x, then one per parameter; default: every parameter, not x) skips
    what needs no gradient. ``out`` (one tensor of each parameter's shape, or None) receives the
    gradients in place: the same memory every minibatch instead of fresh allocations."""
    layers = len(params) // 2
    needs = needs or (False,) + (True,) * len(params)
    out = out or [None] * len(params)
    inputs = (x, *outputs[:-1])
    grads: list[torch.Tensor | None] = [None] * len(params)
    grad_x = None
    for layer in range(layers - 1, -1, -1):
        weight, dw, db = params[2 * layer], out[2 * layer], out[2 * layer + 1]
        if needs[2 + 2 * layer]:  # Σg first, while g is still in cache (the GEMMs below evict it)
            grads[2 * layer + 1] = torch.sum(grad, 0, out=db)
        if needs[1 + 2 * layer]:  # gᵀh; for a narrow input (the observation) (hᵀg)ᵀ is the faster GEMM
            h = inputs[layer]
            if h.shape[1] < 64 and dw is not None:
                torch.mm(h.t(), grad, out=dw.t())  # written through the transposed view
                grads[2 * layer] = dw
            elif h.shape[1] < 64:
                grads[2 * layer] = h.t().mm(grad).t()
            else:
                grads[2 * layer] = torch.mm(grad.t(), h, out=dw)
        if layer > 0:
            grad = _activation_backward(activation, grad.mm(weight), inputs[layer])
        elif needs[0]:
            grad_x = grad.mm(weight)
    return grads, grad_x


class _MLPFunction(torch.autograd.Function):
    """One autograd node for a whole MLP: forward saves each layer's output, backward is
    :func:`mlp_backward`, skipping what needs no gradient."""

    @staticmethod
    def forward(ctx, activation: str, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        outputs = mlp_forward_layers(activation, x, params)
        ctx.activation = activation
        ctx.save_for_backward(x, *params, *outputs[:-1])
        return outputs[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        saved = ctx.saved_tensors
        layers = len(saved) // 3  # x, 2·layers params, layers − 1 hidden outputs
        x, params, hidden = saved[0], saved[1 : 1 + 2 * layers], saved[1 + 2 * layers :]
        outputs = [*hidden, grad]  # the output itself is not needed, only its place in the list
        grads, grad_x = mlp_backward(ctx.activation, x, params, outputs, grad, ctx.needs_input_grad[1:])
        return None, grad_x, *grads


def mlp_parameters(net: nn.Module) -> tuple[str, tuple[torch.Tensor, ...]] | None:
    """(activation, (W1, b1, …, Wn, bn)) of an ``mlp()`` stack, else None: what
    :func:`mlp_forward_layers` and :func:`mlp_backward` take."""
    spec = net.__dict__.get("_rpg_mlp_layers")
    if spec is None:  # analyse the stack once (its modules are never swapped after mlp() builds it)
        spec = net.__dict__["_rpg_mlp_layers"] = _mlp_layers(net) or ()
    if not spec:
        return None
    return spec[0], tuple(t for linear in spec[1] for t in (linear.weight, linear.bias))


def mlp_forward(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for an ``mlp()`` stack, faster: in-place activations and, under autograd for a
    large tanh stack, one node with a hand-written backward for the whole stack. Other modules,
    inputs or stacks: ``net(x)``."""
    spec = net.__dict__.get("_rpg_mlp_layers")
    if spec is None:  # analyse the stack once (its modules are never swapped after mlp() builds it)
        spec = net.__dict__["_rpg_mlp_layers"] = _mlp_layers(net) or ()
    if not spec or x.dtype is not torch.float32 or x.device.type != "cpu" or x.dim() == 0:
        return net(x)
    activation, linears, width = spec
    rows = x.numel() // x.shape[-1]
    # Under autograd the hand-written node pays off through the faster tanh of large layers; for
    # ReLU/ELU or small layers torch's C++ autograd of the Sequential is as fast or faster.
    if torch.is_grad_enabled() and (activation != "tanh" or rows * width < _SIGMOID_TANH_MIN):
        return net(x)
    params: list[torch.Tensor] = []
    for linear in linears:
        params += (linear.weight, linear.bias)
    flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        out = _MLPFunction.apply(activation, flat, *params)
    else:
        out = mlp_forward_layers(activation, flat, params)[-1]
    return out if x.dim() == 2 else out.reshape(*x.shape[:-1], out.shape[-1])


def mlp(in_dim: int, hidden: list[int], out_dim: int, activation: str, out_gain: float) -> nn.Sequential:
    """MLP with orthogonal init (√2 hidden gain, ``out_gain`` on the output layer), zero biases."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        linear = nn.Linear(last, width)
        nn.init.orthogonal_(linear.weight, math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear, _ACTIVATIONS[activation]()]
        last = width
    head = nn.Linear(last, out_dim)
    nn.init.orthogonal_(head.weight, out_gain)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


class GaussianActor(nn.Module):
    def __init__(
        self, obs_dim: int, act_dim: int, hidden: list[int], activation: str, init_std: float, std_type: str = "global"
    ):
        super().__init__()
        self.std_type = std_type
        self.act_dim = act_dim
        if std_type == "global":
            self.mean_net = mlp(obs_dim, hidden, act_dim, activation, out_gain=0.01)
            self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        elif std_type == "state":
            self.mean_net = mlp(obs_dim, hidden, 2 * act_dim, activation, out_gain=0.01)
            with torch.no_grad():  # the log-std half starts at log(init_std)
                self.mean_net[-1].bias[act_dim:] = math.log(init_std)
        else:
            raise ValueError(f"unknown std_type {std_type!r}")

    LOG_STD_RANGE = (-20.0, 2.0)  # the clamp of a state-dependent log σ

    def distribution_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std), both [..., act_dim]."""
        return self.params_from_output(mlp_forward(self.mean_net, obs))

    def params_from_output(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) from the output of ``mean_net``."""
        if self.std_type == "global":
            return out, self.log_std.expand_as(out)
        mean, log_std = out.split(self.act_dim, dim=-1)
        return mean, log_std.clamp(*self.LOG_STD_RANGE)

    def output_grad(self, out: torch.Tensor, d_mean: torch.Tensor, d_log_std: torch.Tensor) -> torch.Tensor:
        """The backward of :meth:`params_from_output` ([B, ·] rows): d loss / d ``mean_net``'s output
        from d loss / d mean and d loss / d log_std. A global log σ is expanded over the rows, so its
        gradient (stored in ``log_std.grad``) is the sum over them; a state-dependent one passes the
        clamp where it lies in the closed range (as autograd's ``clamp``)."""
        if self.std_type == "global":
            if self.log_std.requires_grad:  # into a preallocated gradient when there is one
                self.log_std.grad = torch.sum(d_log_std, 0, out=self.log_std.grad)
            return d_mean
        low, high = self.LOG_STD_RANGE
        raw = out[:, self.act_dim :]
        return torch.cat([d_mean, d_log_std * ((raw >= low) & (raw <= high))], dim=-1)

    @staticmethod
    def log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """log N(a; μ, σ²) summed over action dims (a density: the paper's log π for Gaussians)."""
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def log_prob_and_grads(
        actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`log_prob` and its derivatives per action dim, without autograd: with
        z = (a − μ)·e^(−log σ), d log N / dμ = z·e^(−log σ) and d log N / d log σ = z² − 1."""
        inv_std = torch.exp(-log_std)
        z = (actions - mean) * inv_std
        z_squared = z.pow(2)
        logprob = (-0.5 * z_squared - log_std - _HALF_LOG_2PI).sum(-1)
        return logprob, z * inv_std, z_squared - 1.0

    @staticmethod
    def entropy(log_std: torch.Tensor) -> torch.Tensor:
        """H of the diagonal Gaussian: Σ (log σ + ½ log 2πe)."""
        return (log_std + 0.5 + _HALF_LOG_2PI).sum(-1)

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, log πθ(action|obs)) from the sampling distribution."""
        mean, log_std = self.distribution_params(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        actions = mean + noise * torch.exp(log_std)
        return actions, self.log_prob(actions, mean, log_std)


class Critic(nn.Module):
    def __init__(self, obs_dim: int, hidden: list[int], activation: str):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return mlp_forward(self.net, obs).squeeze(-1)


class ActorCritic(nn.Module):
    """Separate actor and critic networks (customization re-initializes the critic only)."""

    def __init__(
        self, obs_dim: int, act_dim: int, actor_hidden, critic_hidden, activation: str, init_std: float, std_type: str
    ):
        super().__init__()
        self.actor = GaussianActor(obs_dim, act_dim, list(actor_hidden), activation, init_std, std_type)
        self.critic = Critic(obs_dim, list(critic_hidden), activation)

    @classmethod
    def from_config(cls, config, obs_dim: int, act_dim: int) -> "ActorCritic":
        return cls(
            obs_dim,
            act_dim,
            config.actor_hidden,
            config.critic_hidden,
            config.activation,
            config.init_std,
            config.std_type,
        )


class ObservationNormalizer(nn.Module):
    """Running mean/variance of observations (parallel-variance merge), clipped to ±``clip``.

    Kept as buffers so it lands in ``state_dict`` and checkpoints bit-exactly.
    """

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        batch = batch.reshape(-1, self.mean.numel()).to(torch.float64)
        batch_mean, batch_var, batch_count = batch.mean(0), batch.var(0, unbiased=False), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.pow(2) * self.count * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        normalized = (obs.to(torch.float64) - self.mean) / torch.sqrt(self.var + self.eps)
        return normalized.clamp(-self.clip, self.clip).to(torch.float32)
