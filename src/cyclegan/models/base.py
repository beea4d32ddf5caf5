"""What every model shares: the interface the training loop, checkpoints and translation rely on, and the pieces of
an optimisation step that CycleGAN and pix2pix both use (Adam, frozen discriminators, the discriminator loss).

A model is one subclass of `TranslationModel`, in one file: it builds its networks, optimisers and image pools and
defines `training_step` and `sample`. Everything else here works on what it lists in `networks()`, `optimizers` and
`pools`, so a checkpoint holds the same structure for every model.

Distributed training (`distribute`) wraps each network in DistributedDataParallel in place, under the same attribute,
so a step keeps calling `self.gen_ab(...)`. Plain DDP (no static graph, no unused-parameter search) is exactly right
for these steps, which a test checks against a single process:
- a network may be called several times before one backward (CycleGAN's G on x, then on F(y) for the cycle):
  autograd sums the contributions and accumulates each parameter's gradient once, so DDP's per-parameter hook
  fires once and all-reduces the full gradient. (`static_graph=True` counts hooks differently and gives wrong
  gradients for these steps; we measured it.)
- a discriminator called while frozen (requires_grad False, in the generator's update) gets no gradient and so
  starts no reduction; its next update, with every parameter thawed, reduces as usual.
Checkpoints, sampling and translation always see the bare networks (`plain_networks`, `evaluating`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import losses
from ..config import ModelOptions, NetworksConfig, TrainConfig, check_positive, option
from ..nets.speed import speed_up
from ..training.pool import ImagePool


@dataclass(frozen=True)
class AdversarialOptions(ModelOptions):
    """The options every model trained against discriminators has: the adversarial loss and its penalty."""

    gan_mode: str = option("lsgan", "Adversarial loss: lsgan (least squares, CycleGAN paper Sec. 4), vanilla "
                           "(log-likelihood, Eq. 1), wgangp (Wasserstein with gradient penalty).", losses.GAN_MODES)
    lambda_gp: float = option(10.0, "Gradient penalty weight for wgangp (Gulrajani et al.: 10).")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("lambda_gp", self.lambda_gp, allow_zero=True)


def adam(parameters: Iterable[nn.Parameter], train: TrainConfig) -> torch.optim.Adam:
    """Adam as both papers use it: lr 2e-4, beta1 = 0.5 (Zhu et al. Sec. 4; Isola et al. Sec. 3.3)."""
    return torch.optim.Adam(parameters, lr=train.lr, betas=(train.beta1, train.beta2))


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    """Freeze (or thaw) networks, so that a generator's backward pass does not fill a discriminator's gradients."""
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad_(flag)


def unwrap(net: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or `net` itself)."""
    return net.module if isinstance(net, DistributedDataParallel) else net


def loss_values(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """The step's loss terms as floats, read back with one device synchronisation."""
    values = torch.stack([value.detach().float() for value in terms.values()]).tolist()
    return dict(zip(terms, values, strict=True))


def _gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient the optimiser would apply is finite (one device synchronisation)."""
    gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not gradients:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in gradients]).all())


class TranslationModel(nn.Module):
    """Base of the models; each has a `model_registry.ModelEntry` (its name, data kind, sample columns, official
    file names). A subclass sets the class attributes, fills `optimizers` and `pools` in its constructor
    and defines `networks`, `generators_for`, `training_step` and `sample`.

    discriminator_names: the names in `networks()` of the discriminators (a gradient penalty differentiates them).
    precision: float32, or mixed precision (bf16, or fp16 with a gradient scaler), see `autocast`.

    The step is the optimised one: batched calls where exact (`_forward_each`), each model's own economies
    (CycleGAN: one backward pass per chain) and the faster layers of `_speed_up`. tests/reference_step.py holds
    the plain step it is checked against.
    """

    discriminator_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, networks: NetworksConfig, options: ModelOptions, precision: str = "float32") -> None:
        super().__init__()
        self.architecture = networks
        self.options = options
        self.precision = precision
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.pools: dict[str, ImagePool] = {}
        self._scaler: torch.amp.GradScaler | None = None  # fp16 only; made on the first step, on the model's device
        self.skip_nonfinite_updates = False  # set by the training loop from train.skip_nonfinite_steps
        self.skipped_updates = 0
        self._scaler_state: dict[str, Any] | None = None

    @staticmethod
    def generators_for(networks: NetworksConfig) -> dict[str, nn.Module]:
        """The model's generators by name, initialised: all that translation needs (no discriminators)."""
        raise NotImplementedError

    def networks(self) -> dict[str, nn.Module]:
        """Every network by its checkpoint name (gen_ab, disc_b, ...)."""
        raise NotImplementedError

    def _speed_up(self, fast_convolutions: bool) -> None:
        """Give the networks their faster layers (`nets.speed.speed_up`), all in float32 only (in mixed precision
        autocast chooses each layer's precision): the memory-lean ones, except in the discriminators under WGAN-GP,
        whose penalty differentiates them twice (the lean backward passes are differentiable once); NNPACK
        convolutions with train.fast_convolutions. Call once the networks are built."""
        float32 = self.precision == "float32"
        wgangp = isinstance(self.options, AdversarialOptions) and self.options.gan_mode == "wgangp"
        penalised = self.discriminator_names if wgangp else ()
        for name, net in self.networks().items():
            speed_up(net, lean=float32 and name not in penalised, fast_convolutions=float32 and fast_convolutions)

    def autocast(self) -> torch.autocast:
        """Forward passes in the training precision: torch.autocast to bf16 or fp16, or plain float32."""
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.precision != "float32")

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), scaled in fp16 so that small gradients do not underflow (the scaler unscales them)."""
        if self.precision == "fp16":
            loss = self._grad_scaler().scale(loss)
        loss.backward()

    def optimizer_step(self, name: str) -> None:
        """Step optimiser `name`; in fp16 through the scaler, which skips a step whose gradients overflowed. With
        `skip_nonfinite_updates` (train.skip_nonfinite_steps), an update whose gradients hold a NaN or infinity is
        skipped too, so the weights stay finite."""
        if self.skip_nonfinite_updates and not _gradients_finite(self.optimizers[name]):
            self.optimizers[name].zero_grad(set_to_none=True)
            self.skipped_updates += 1
            return
        if self.precision == "fp16":
            self._grad_scaler().step(self.optimizers[name])
        else:
            self.optimizers[name].step()

    def end_step(self) -> None:
        """After a step's last optimiser step: let the fp16 scaler adapt its scale."""
        if self.precision == "fp16":
            self._grad_scaler().update()

    def _grad_scaler(self) -> torch.amp.GradScaler:
        if self._scaler is None:
            self._scaler = torch.amp.GradScaler(self.device.type)
            if self._scaler_state is not None:
                self._scaler.load_state_dict(self._scaler_state)
        return self._scaler

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch of each domain (pairs for a paired model); every loss term by name."""
        raise NotImplementedError

    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images for the sample grids, by name (real_a, fake_b, ...), computed in eval mode."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_learning_rate(self, lr: float) -> None:
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = lr

    def training_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs: optimiser moments and image pools."""
        state = {"optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
                 "pools": {name: pool.state_dict() for name, pool in self.pools.items()}}
        if self.precision == "fp16":
            state["grad_scaler"] = self._grad_scaler().state_dict()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if self.precision == "fp16" and "grad_scaler" in state:
            self._scaler, self._scaler_state = None, state["grad_scaler"]
        for name, pool in self.pools.items():
            pool.load_state_dict(state["pools"][name], self.device)

    def plain_networks(self) -> dict[str, nn.Module]:
        """`networks()` without DistributedDataParallel wrappers: what checkpoints store."""
        return {name: unwrap(net) for name, net in self.networks().items()}

    def network_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: net.state_dict() for name, net in self.plain_networks().items()}

    def load_network_state(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, net in self.plain_networks().items():
            net.load_state_dict(state[name])

    def distribute(self, rank: int, device_ids: list[int] | None = None) -> None:
        """Prepare this model for process `rank` of a distributed run (see the module docstring): wrap every
        network in DistributedDataParallel, under its attribute (the names of `networks()` must be attribute
        names), and give each image pool this rank's own stream. Call after `.to(device)`."""
        for name, net in self.networks().items():
            # DDP broadcasts rank 0's weights (and, at each forward, batch-norm buffers) to the other ranks.
            setattr(self, name, DistributedDataParallel(net, device_ids=device_ids))
        self.pools = {name: pool.for_rank(rank) for name, pool in self.pools.items()}

    @contextmanager
    def accumulating(self, nets: Iterable[nn.Module]) -> Iterator[None]:
        """Backward passes inside only add to the `.grad` of `nets`; their next backward outside all-reduces the
        sum, once (DistributedDataParallel.no_sync; a no-op in a single process). Pass only networks that are
        called again outside before the optimiser step: one that is not would keep an unreduced gradient."""
        with ExitStack() as stack:
            for net in nets:
                if isinstance(net, DistributedDataParallel):
                    stack.enter_context(net.no_sync())
            yield

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode (running batch-norm statistics, no dropout) and no gradients, restoring the mode after.
        The networks are unwrapped meanwhile: rank 0 samples alone, which a DDP forward (a collective) forbids."""
        was_training = self.training
        wrapped = self.networks()
        for name, net in self.plain_networks().items():
            setattr(self, name, net)
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for name, net in wrapped.items():
                setattr(self, name, net)
            self.train(was_training)

    def _forward_each(self, net: nn.Module, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`net` on each batch. Without batch norm every image is normalised on its own, so one call on the
        concatenation gives the same result with less overhead; batch norm would mix the batches, so it gets one
        call each."""
        if self.architecture.norm == "batch":
            return tuple(net(batch) for batch in batches)
        return net(torch.cat(batches)).split([batch.shape[0] for batch in batches])

    def _discriminator_terms(self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, disc_name: str = "disc",
                             gp_name: str = "gp") -> dict[str, torch.Tensor]:
        """`disc_name`: the discriminator's loss on real and (detached) generated inputs, halved for lsgan and
        vanilla (both papers); `gp_name`: the WGAN-GP penalty, with gan_mode=wgangp. For models whose options are
        `AdversarialOptions`."""
        options: AdversarialOptions = self.options
        fake = fake.detach()
        with self.autocast():
            real_scores, fake_scores = self._forward_each(disc, real, fake)
            terms = {disc_name: losses.discriminator_loss(real_scores, fake_scores, options.gan_mode)}
        if options.gan_mode == "wgangp":  # the penalty the official code defines but never applies
            terms[gp_name] = losses.gradient_penalty(disc, real, fake, options.lambda_gp)
        return terms
