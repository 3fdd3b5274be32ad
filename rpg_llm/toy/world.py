"""The toy token world: a language-model task whose true rewards and optimal policies are known.

A seeded vocabulary of V content words, a handful of prompts, and completions of L tokens.

* basic reward r ("fluency") — Markov in tokens: r(y) = Σ_t B[y_{t−1}, y_t], a bigram table B,
  with y_0 the last prompt word;
* add-on reward r_R ("mention these words") — scored once, at the end of the completion:
  r_R(y) = addon_scale · |{target words that occur in y}|;
* the prior — the exact max-entropy optimal policy for r at temperature α (soft value iteration,
  :func:`rpg.maxent.soft_value_iteration`; exact because r is Markov), distilled into a tiny
  Llama ("pretraining") saved with its tokenizer and loadable by ``AutoModelForCausalLM``.

Token dynamics are deterministic (the next state is the sequence so far), so the soft optimum is
a sequence-level Gibbs distribution and the target of Residual PG (docs/theory.md §2, paper eq. 2/8) is

    π*(y|x) ∝ π_prior(y|x)^(ω'/α̂) · exp(r_R(y)/α̂)

— the soft-optimal policy of (ω'/α)·r + r_R at temperature α̂. Because r_R looks at the whole
completion, the per-token target is computed on an augmented state (last word, set of target
words mentioned so far) with :func:`rpg.maxent.rpg_target`; tests check that it equals the
sequence-level formula. Everything about the exact prior and targets is dynamic programming over
(position, last word, words mentioned) with O(L·V²·2^K) work: per-token log-policies, log Z
(:meth:`ToyWorld.log_partition`), the log-density of any completion (:meth:`ToyWorld.exact_log_probs`)
and expected rewards / KL to the prior (:meth:`ToyWorld.exact_policy_statistics`) — so V = 256 words
and L = 32 tokens work. Evaluation of a *model* is exact by enumerating all V^L completions (small
worlds), or Monte Carlo over its own samples scored with exact log-densities, with standard errors.

Support: targets live on content-only completions (L words). The toy PPO job suppresses ``<pad>`` and
``<eos>`` when it samples and scores (``suppress_token_ids``), and :meth:`ToyWorld.evaluate` scores the
same suppressed law, reporting as ``off_support_mass`` what the raw model would put outside
(docs/toy_world.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from rpg.maxent import SoftSolution, rpg_target, soft_value_iteration, state_distributions
from rpg_llm.toy.tiny_llama import TOY_SPECIAL_TOKENS, tiny_llama_config, word_tokenizer

__all__ = ["ToyWorldConfig", "ToyWorldArguments", "ToyWorld", "default_cache_dir"]

_WORDS = (
    "red",
    "blue",
    "green",
    "gold",
    "cat",
    "dog",
    "owl",
    "fox",
    "sun",
    "moon",
    "rain",
    "snow",
    "tree",
    "leaf",
    "rock",
    "sand",
    "bell",
    "drum",
    "harp",
    "horn",
    "ship",
    "road",
    "hill",
    "lake",
)
MAX_VOCAB_SIZE = 256


def _word_list(vocab_size: int) -> list[str]:
    """The first ``vocab_size`` words: the 24 named ones, then made-up consonant–vowel–consonant words.

    The first 24 never change, so worlds with V ≤ 24 (and their cached priors) stay what they were.
    """
    made_up = (c1 + v + c2 for c1 in "bdfgklmnprstvz" for v in "aeiou" for c2 in "bdgklmnprstxz")
    words = list(_WORDS) + [w for w in made_up if w not in _WORDS]
    return words[:vocab_size]


def default_cache_dir() -> Path:
    """``$RPG_CACHE/toy_world`` or ``~/.cache/rpg/toy_world``."""
    root = os.environ.get("RPG_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rpg")
    return Path(root) / "toy_world"


@dataclass
class ToyWorldConfig:
    """Everything that defines a toy world; its hash names the cache entry."""

    vocab_size: int = field(default=8, metadata={"help": f"number of content words V (≤ {MAX_VOCAB_SIZE})"})
    completion_length: int = field(default=4, metadata={"help": "tokens per completion L"})
    num_prompts: int = field(default=4, metadata={"help": "number of prompts"})
    prompt_length: int = field(default=2, metadata={"help": "words per prompt"})
    num_target_words: int = field(default=2, metadata={"help": "words the add-on reward asks to mention"})
    fluency_scale: float = field(default=1.5, metadata={"help": "std of the bigram table B"})
    addon_scale: float = field(default=1.0, metadata={"help": "add-on reward per target word mentioned"})
    alpha: float = field(default=1.0, metadata={"help": "temperature α of the max-entropy prior"})
    seed: int = field(default=0, metadata={"help": "seed of the world (tables, prompts, model init)"})
    hidden_size: int = field(default=64, metadata={"help": "prior transformer width"})
    num_layers: int = field(default=2, metadata={"help": "prior transformer depth"})
    num_heads: int = field(default=4, metadata={"help": "prior transformer heads"})
    distill_steps: int = field(default=400, metadata={"help": "distillation (pretraining) steps"})
    distill_batch_size: int = field(default=128, metadata={"help": "sequences per distillation step"})
    distill_lr: float = field(default=3e-3, metadata={"help": "distillation learning rate"})
    max_enumeration: int = field(default=200_000, metadata={"help": "evaluate exactly when V^L ≤ this"})

    def __post_init__(self) -> None:
        if not 2 <= self.vocab_size <= MAX_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be in [2, {MAX_VOCAB_SIZE}], got {self.vocab_size}")
        for name in ("completion_length", "num_prompts", "prompt_length", "distill_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.num_target_words <= self.vocab_size:
            raise ValueError(f"num_target_words must be in [0, vocab_size], got {self.num_target_words}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.distill_steps < 0:
            raise ValueError(f"distill_steps must be >= 0, got {self.distill_steps}")

    def fingerprint(self) -> str:
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


@dataclass
class ToyWorldArguments:
    """The toy world's command-line fields, shared by the PPO and DPO toy jobs (one cached world).

    The world fields are the defining subset of :class:`ToyWorldConfig`, prefixed ``world_``.
    """

    results_dir: str = field(default="results/llm", metadata={"help": "where the table (markdown + JSON) is written"})
    world_cache_dir: str | None = field(
        default=None, metadata={"help": "toy world cache (default $RPG_CACHE or ~/.cache/rpg)"}
    )
    world_vocab_size: int = field(default=8, metadata={"help": "toy world: content words"})
    world_completion_length: int = field(default=4, metadata={"help": "toy world: tokens per completion"})
    world_num_prompts: int = field(default=4, metadata={"help": "toy world: prompts"})
    world_seed: int = field(default=0, metadata={"help": "toy world: seed of its tables and prior"})
    world_distill_steps: int = field(default=400, metadata={"help": "toy world: distillation steps of the prior"})

    def __post_init__(self) -> None:
        self.world_config()  # bad world fields fail here, in one line, before any model is built

    def build_world(self) -> "ToyWorld":
        """The world these fields name, built once: the main process builds it, the others read the cache."""
        from accelerate import PartialState

        with PartialState().main_process_first():
            return ToyWorld.build(self.world_config(), self.world_cache_dir)

    def world_config(self) -> ToyWorldConfig:
        return ToyWorldConfig(
            vocab_size=self.world_vocab_size,
            completion_length=self.world_completion_length,
            num_prompts=self.world_num_prompts,
            seed=self.world_seed,
            distill_steps=self.world_distill_steps,
        )


class ToyWorld:
    """A built toy world. Use :meth:`build`; the constructor only wires loaded pieces together."""

    def __init__(self, config: ToyWorldConfig, directory: Path, tables: dict, tokenizer) -> None:
        self.config = config
        self.directory = Path(directory)
        self.tokenizer = tokenizer
        self.words: list[str] = tables["words"]
        self.bigram = torch.tensor(tables["bigram"], dtype=torch.float64)  # [V, V]
        self.prompt_words: list[list[int]] = tables["prompt_words"]  # content indices
        self.target_words: list[int] = tables["target_words"]
        self.info: dict = tables.get("info", {})
        self.num_special = len(TOY_SPECIAL_TOKENS)  # ids 0..num_special−1; content words follow
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_id = tokenizer.eos_token_id
        self.prior = self._exact_prior()
        self._completions: torch.Tensor | None = None
        self._targets: dict[tuple[float, float], SoftSolution] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls, config: ToyWorldConfig | None = None, cache_dir: str | Path | None = None, progress: bool = True
    ) -> "ToyWorld":
        """Build the world, or load it from ``cache_dir/<config hash>`` if it was built before."""
        config = config or ToyWorldConfig()
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        directory = cache_dir / f"world-{config.fingerprint()}"
        if (directory / "world.json").exists():
            return cls.load(directory)
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
        try:
            tables = cls._make_tables(config)
            tokenizer = word_tokenizer(tables["words"], TOY_SPECIAL_TOKENS)
            world = cls(config, directory, tables, tokenizer)
            model = world._distill_prior(progress=progress)
            model.save_pretrained(staging / "prior_model")
            tokenizer.save_pretrained(staging / "prior_model")
            floor = world.evaluate(model, omega_prime=config.alpha, alpha_hat=config.alpha, num_samples=1024)
            tables["info"] = {
                "prior_kl_to_exact_prior": floor["kl_to_prior"],
                "prior_off_support_mass": floor["off_support_mass"],
            }
            (staging / "world.json").write_text(
                json.dumps({"config": dataclasses.asdict(config), "tables": tables}, indent=1)
            )
            try:  # atomic publish; a concurrent builder may have won the race
                staging.rename(directory)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls.load(directory)

    @classmethod
    def load(cls, directory: str | Path) -> "ToyWorld":
        from transformers import AutoTokenizer

        directory = Path(directory)
        data = json.loads((directory / "world.json").read_text())
        tokenizer = AutoTokenizer.from_pretrained(directory / "prior_model")
        return cls(ToyWorldConfig(**data["config"]), directory, data["tables"], tokenizer)

    @staticmethod
    def _make_tables(config: ToyWorldConfig) -> dict:
        g = torch.Generator().manual_seed(config.seed)
        words = _word_list(config.vocab_size)
        bigram = (
            torch.randn(config.vocab_size, config.vocab_size, generator=g, dtype=torch.float64) * config.fluency_scale
        )
        prompt_words = torch.randint(config.vocab_size, (config.num_prompts, config.prompt_length), generator=g)
        target_words = torch.randperm(config.vocab_size, generator=g)[: config.num_target_words]
        return {
            "words": words,
            "bigram": bigram.tolist(),
            "prompt_words": prompt_words.tolist(),
            "target_words": sorted(target_words.tolist()),
        }

    @property
    def prior_model_dir(self) -> Path:
        return self.directory / "prior_model"

    def load_prior_model(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.prior_model_dir)

    # ------------------------------------------------------------------ prompts and rewards
    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def completion_length(self) -> int:
        return self.config.completion_length

    @property
    def prompts(self) -> list[str]:
        return [" ".join(self.words[i] for i in row) for row in self.prompt_words]

    def prompt_dataset(self, repeats: int = 1):
        """The prompts as a ``datasets.Dataset`` with a "prompt" column (TRL's standard format)."""
        from datasets import Dataset

        return Dataset.from_dict({"prompt": self.prompts * repeats})

    def _content(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Content index (0..V−1) of token ids; −1 for special tokens."""
        token_ids = torch.as_tensor(token_ids)
        content = token_ids - self.num_special
        return torch.where((content >= 0) & (content < self.vocab_size), content, torch.full_like(content, -1))

    def _completion_valid(self, completion: torch.Tensor) -> torch.Tensor:
        """True on completion tokens before the first special token (EOS or pad ends the text)."""
        return torch.cumprod((completion >= 0).long(), dim=-1).bool()

    def _last_prompt_word(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        content = self._content(prompt_ids)
        # Prompts may be left- or right-padded: take the last content word of each row.
        positions = torch.arange(content.shape[-1]).expand_as(content)
        last = torch.where(content >= 0, positions, torch.full_like(positions, -1)).max(-1).values
        if (last < 0).any():
            raise ValueError("every prompt must contain at least one word of the world's vocabulary")
        return content.gather(-1, last.unsqueeze(-1)).squeeze(-1)

    def basic_reward(self, prompt_ids: torch.Tensor, completion_ids: torch.Tensor) -> torch.Tensor:
        """Fluency r(y) = Σ_t B[y_{t−1}, y_t] over the completion's words (y_0 = last prompt word)."""
        prompt_ids, completion_ids = torch.as_tensor(prompt_ids), torch.as_tensor(completion_ids)
        previous = self._last_prompt_word(prompt_ids)
        completion = self._content(completion_ids)
        valid = self._completion_valid(completion)
        prev_tokens = torch.cat([previous.unsqueeze(-1), completion[:, :-1]], dim=-1)
        table = self.bigram[prev_tokens.clamp_min(0), completion.clamp_min(0)]
        return (table * valid).sum(-1).float()

    def addon_reward(self, prompt_ids: torch.Tensor, completion_ids: torch.Tensor) -> torch.Tensor:
        """r_R(y) = addon_scale · number of distinct target words in the completion."""
        completion = self._content(torch.as_tensor(completion_ids))
        valid = self._completion_valid(completion)
        mentioned = torch.zeros(completion.shape[0])
        for word in self.target_words:
            mentioned += ((completion == word) & valid).any(-1).float()
        return self.config.addon_scale * mentioned

    def _encode(self, texts: list[str]) -> torch.Tensor:
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        return encoded["input_ids"]

    def reward_functions(self, include_basic: bool = False) -> list[Callable]:
        """Rewards in TRL's signature ``f(prompts, completions, **kwargs) -> list[float]``.

        By default only the add-on reward (what a customization optimizes); ``include_basic``
        adds the fluency reward (for a Full policy trained on r + r_R).
        """

        def addon(prompts, completions, **kwargs):
            return self.addon_reward(self._encode(_as_text(prompts)), self._encode(_as_text(completions))).tolist()

        def basic(prompts, completions, **kwargs):
            return self.basic_reward(self._encode(_as_text(prompts)), self._encode(_as_text(completions))).tolist()

        addon.__name__ = "toy_addon_reward"
        basic.__name__ = "toy_basic_reward"
        return [addon, basic] if include_basic else [addon]

    # ------------------------------------------------------------------ exact solutions (dynamic programming)
    def _exact_prior(self) -> SoftSolution:
        """Max-entropy optimal policy of r at α on the token MDP (state = last word)."""
        V = self.vocab_size
        next_state = torch.arange(V).expand(V, V)  # next state = the word just said
        return soft_value_iteration(self.bigram, next_state, self.completion_length, self.config.alpha)

    def _target_bits(self) -> torch.Tensor:
        """bit[w] = 2^k if w is the k-th target word, else 0 (the add-on state's update)."""
        bit = torch.zeros(self.vocab_size, dtype=torch.long)
        for k, word in enumerate(self.target_words):
            bit[word] = 1 << k
        return bit

    def _augmented_mdp(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """State = (last word, bitmask of target words mentioned): index word·2^K + mask.

        Returns the next-state indices [S, A] (deterministic dynamics; no [S, A, S] table, so
        V = 256 fits), the add-on reward [L, S, A] (paid at the last step) and the prior's
        log-policy lifted to [L, S, A].
        """
        V, K, L = self.vocab_size, len(self.target_words), self.completion_length
        num_masks = 2**K
        S = V * num_masks
        word_of = torch.arange(S) // num_masks
        mask_of = torch.arange(S) % num_masks
        next_mask = mask_of.unsqueeze(-1) | self._target_bits().unsqueeze(0)  # [S, A]
        next_state = torch.arange(V).unsqueeze(0) * num_masks + next_mask
        popcount = torch.tensor([bin(m).count("1") for m in range(num_masks)], dtype=torch.float64)
        addon = torch.zeros(L, S, V, dtype=torch.float64)
        addon[L - 1] = self.config.addon_scale * popcount[next_mask]
        prior_log_policy = self.prior.log_policy[:, word_of, :]  # [L, S, A]
        return next_state, addon, prior_log_policy

    def target_solution(self, omega_prime: float, alpha_hat: float) -> SoftSolution:
        """Per-token exact target of RPG with (ω', α̂), on the augmented state (rpg.maxent.rpg_target)."""
        key = (float(omega_prime), float(alpha_hat))
        if key not in self._targets:
            next_state, addon, prior_log_policy = self._augmented_mdp()
            self._targets[key] = rpg_target(
                addon, prior_log_policy, next_state, self.completion_length, omega_prime, alpha_hat
            )
        return self._targets[key]

    def _initial_states(self, first_words: torch.Tensor, augmented: bool) -> torch.Tensor:
        return first_words * 2 ** len(self.target_words) if augmented else first_words

    def log_partition(self, omega_prime: float | None = None, alpha_hat: float | None = None) -> torch.Tensor:
        """log Z(x) per prompt, [num_prompts], from the soft value at the first state (no enumeration).

        Without coefficients, the prior's: log Σ_y exp(r(y)/α). With (ω', α̂), the target's:
        log Σ_y π_prior(y|x)^(ω'/α̂)·exp(r_R(y)/α̂), since V_0 = α̂·log Σ_y exp(Σ_t reward_t/α̂) and the
        augmented reward of eq. 8 sums to ω'·log π_prior(y|x) + r_R(y).
        """
        first = self._first_words()
        if omega_prime is None or alpha_hat is None:
            return self.prior.v[0, first] / self.config.alpha
        return self.target_solution(omega_prime, alpha_hat).v[0, self._initial_states(first, True)] / alpha_hat

    def exact_log_probs(
        self,
        first_words: torch.Tensor,
        completions: torch.Tensor,
        omega_prime: float | None = None,
        alpha_hat: float | None = None,
    ) -> torch.Tensor:
        """Exact log π_prior(y|x) (no coefficients) or log π*(y|x) of (ω', α̂) for content completions [N, L].

        ``first_words`` [N] is each completion's last prompt word; cost O(N·L), for any V and L.
        """
        log_policy, augmented = self._log_policy_of(omega_prime, alpha_hat)
        return self._sequence_log_prob(log_policy, first_words, completions, augmented)

    def _log_policy_of(self, omega_prime: float | None, alpha_hat: float | None) -> tuple[torch.Tensor, bool]:
        """(per-token log-policy [L, S, A], whether its states are augmented with the mentioned-targets mask):
        the exact prior's without coefficients, the exact target's of (ω', α̂) with them."""
        if (omega_prime is None) != (alpha_hat is None):
            raise ValueError(f"give both omega_prime and alpha_hat or neither, got {omega_prime=}, {alpha_hat=}")
        if omega_prime is None:
            return self.prior.log_policy, False
        return self.target_solution(omega_prime, alpha_hat).log_policy, True

    def _sequence_log_prob(
        self, log_policy: torch.Tensor, first_words: torch.Tensor, completions: torch.Tensor, augmented: bool
    ) -> torch.Tensor:
        """Σ_t log π_t(y_t|s_t) for content completions [N, L] starting after ``first_words`` [N]."""
        _, total = self._walk(
            log_policy, first_words, augmented, completions.shape[1], lambda t, state: completions[:, t]
        )
        return total

    def _walk(self, log_policy: torch.Tensor, first_words: torch.Tensor, augmented: bool, steps: int, choose):
        """Walk the token MDP for ``steps`` tokens from ``first_words`` [N]: at step t the state is the last word
        (plus, ``augmented``, the mask of target words mentioned so far) and ``choose(t, state)`` gives the words
        [N]. Returns (the words [N, steps], Σ_t log π_t(word_t | state_t) [N] under ``log_policy``)."""
        num_masks = 2 ** len(self.target_words)
        bit = self._target_bits()
        word, mask = first_words, torch.zeros_like(first_words)
        total = torch.zeros(first_words.shape[0], dtype=torch.float64)
        words = []
        for t in range(steps):
            state = word * num_masks + mask if augmented else word
            word = choose(t, state)
            total += log_policy[t, state, word]
            mask = mask | bit[word]
            words.append(word)
        return torch.stack(words, dim=1) if words else first_words.new_empty(first_words.shape[0], 0), total

    def sample_exact(
        self,
        prompt_index: torch.Tensor,
        generator: torch.Generator,
        omega_prime: float | None = None,
        alpha_hat: float | None = None,
    ) -> torch.Tensor:
        """Content completions [N, L] drawn from the exact prior (no coefficients) or the exact target of
        (ω', α̂), one per entry of ``prompt_index`` [N], by ancestral sampling from the per-token
        log-policies of dynamic programming: O(N·L·V), for any V and L (no enumeration)."""
        num_prompts = len(self.prompt_words)
        out_of_range = prompt_index.numel() > 0 and (prompt_index.min() < 0 or prompt_index.max() >= num_prompts)
        if prompt_index.dim() != 1 or out_of_range:
            raise ValueError(f"prompt_index must be a 1-D tensor of indices in [0, {num_prompts}), got {prompt_index}")
        log_policy, augmented = self._log_policy_of(omega_prime, alpha_hat)

        def draw(t: int, state: torch.Tensor) -> torch.Tensor:
            return torch.multinomial(log_policy[t, state].exp(), 1, generator=generator).squeeze(-1)

        first_words = self._first_words()[prompt_index]
        completions, _ = self._walk(log_policy, first_words, augmented, self.completion_length, draw)
        return completions

    def exact_policy_statistics(self, omega_prime: float | None = None, alpha_hat: float | None = None) -> dict:
        """Expected basic / add-on / total reward and KL(π ‖ exact prior) of the exact prior or target.

        Forward dynamic programming over the augmented states' marginals d_t(s)
        (:func:`rpg.maxent.state_distributions`): exact, O(L·S·A), no enumeration.
        """
        next_state, addon, prior_log_policy = self._augmented_mdp()
        target = omega_prime is not None and alpha_hat is not None
        log_policy = self.target_solution(omega_prime, alpha_hat).log_policy if target else prior_log_policy
        S = next_state.shape[0]
        initial = torch.nn.functional.one_hot(self._initial_states(self._first_words(), True), S).double()
        marginals = state_distributions(log_policy, next_state, initial)[:-1]  # [L, prompts, S]
        policy = log_policy.exp()
        word_of = torch.arange(S) // 2 ** len(self.target_words)
        log_ratio = torch.where(policy > 0, log_policy - prior_log_policy, torch.zeros_like(policy))
        per_state = {
            "basic": (policy * self.bigram[word_of]).sum(-1),
            "addon": (policy * addon).sum(-1),
            "kl_to_prior": (policy * log_ratio).sum(-1),
        }  # each [L, S]
        result = {k: float(torch.einsum("tps,ts->p", marginals, v).mean()) for k, v in per_state.items()}
        result["total"] = result["basic"] + result["addon"]
        result.update(off_support_mass=0.0, method="exact (dynamic programming)")
        return result

    def greedy_mass_on_special_tokens(self, alpha_hat: float) -> float:
        """Mass that the optimum of Greedy (ω' = 0) puts on completions with ``<pad>`` / ``<eos>`` when
        they are not suppressed: what the content-only targets would hide (mean over prompts).

        Without suppression PPO samples L tokens from V words, ``<pad>`` (dropped when the completion is
        decoded, so it only skips a step) and ``<eos>`` (ends the completion). With ω' = 0 the optimum of
        eq. 8 is π* ∝ exp(r_R(y)/α̂) over every distinct sampled sequence; solved on states (mentioned
        targets, ended) with :func:`rpg.maxent.soft_value_iteration`, it is compared with the
        content-only partition function :meth:`log_partition`.
        """
        if alpha_hat <= 0:
            raise ValueError(f"alpha_hat must be > 0, got {alpha_hat}")
        V, K, L = self.vocab_size, len(self.target_words), self.completion_length
        num_masks = 2**K
        pad = V  # actions: the V words, then <pad> (index V), then <eos> (index V + 1)
        mask_of = torch.arange(2 * num_masks) % num_masks
        ended = torch.arange(2 * num_masks) >= num_masks  # states num_masks.. : the completion has ended
        words = mask_of.unsqueeze(-1) | self._target_bits().unsqueeze(0)  # [S, V]
        next_state = torch.cat([words, mask_of.unsqueeze(-1), (mask_of + num_masks).unsqueeze(-1)], dim=-1)
        next_state[ended] = torch.arange(2 * num_masks)[ended].unsqueeze(-1)  # an ended completion stays ended
        allowed = ~ended.unsqueeze(-1).expand(-1, V + 2).clone()
        allowed[ended, pad] = True  # after <eos> the sampler only writes padding, with probability 1
        popcount = torch.tensor([bin(m).count("1") for m in range(num_masks)], dtype=torch.float64)
        addon = torch.zeros(L, 2 * num_masks, V + 2, dtype=torch.float64)
        addon[L - 1] = self.config.addon_scale * popcount[next_state % num_masks]
        solution = soft_value_iteration(addon, next_state, L, alpha_hat, action_mask=allowed)
        log_z_all = solution.v[0, 0] / alpha_hat  # the same for every prompt: r_R ignores the prompt
        return float(1.0 - (self.log_partition(0.0, alpha_hat) - log_z_all).exp().mean())

    # ------------------------------------------------------------------ exact enumeration (small worlds)
    def all_completions(self) -> torch.Tensor:
        """Every content completion [V^L, L] in lexicographic order (content indices)."""
        if self._completions is None:
            self._check_enumerable()
            V, L = self.vocab_size, self.completion_length
            self._completions = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.long)
        return self._completions

    @property
    def enumerable(self) -> bool:
        """Whether V^L ≤ ``max_enumeration``: evaluation is then exact by enumeration."""
        return self.vocab_size**self.completion_length <= self.config.max_enumeration

    def _check_enumerable(self) -> None:
        count = self.vocab_size**self.completion_length
        if not self.enumerable:
            raise ValueError(f"V^L = {count} completions exceed max_enumeration={self.config.max_enumeration}")

    def _first_words(self) -> torch.Tensor:
        return torch.tensor([row[-1] for row in self.prompt_words])

    def exact_prior_log_probs(self) -> torch.Tensor:
        """log π_prior(y|x) of the exact prior, [num_prompts, V^L]."""
        ys = self.all_completions()
        return torch.stack([self.exact_log_probs(w.expand(len(ys)), ys) for w in self._first_words()])

    def exact_target_log_probs(self, omega_prime: float, alpha_hat: float) -> torch.Tensor:
        """log π*(y|x) of RPG's exact target for (ω', α̂), [num_prompts, V^L] (docs/theory.md §2).

        π* ∝ π_prior^(ω'/α̂)·exp(r_R/α̂), the soft-optimal policy of (ω'/α)·r + r_R at α̂.
        """
        ys = self.all_completions()
        first_words = self._first_words()
        return torch.stack([self.exact_log_probs(w.expand(len(ys)), ys, omega_prime, alpha_hat) for w in first_words])

    def completion_rewards(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(basic, add-on) reward of every content completion for every prompt, [num_prompts, V^L]."""
        ys = self.all_completions() + self.num_special
        basic, addon = [], []
        for row in self.prompt_words:
            prompt = torch.tensor(row).add(self.num_special).expand(len(ys), -1)
            basic.append(self.basic_reward(prompt, ys).double())
            addon.append(self.addon_reward(prompt, ys).double())
        return torch.stack(basic), torch.stack(addon)

    # ------------------------------------------------------------------ evaluation
    @property
    def special_token_ids(self) -> list[int]:
        """``<pad>`` and ``<eos>``: outside the support of every target (completions are L content words)."""
        return list(range(self.num_special))

    def model_log_probs(self, model, batch_size: int = 4096, content_only: bool = False) -> torch.Tensor:
        """log πθ(y|x) of every content completion, [num_prompts, V^L], by one pass over prefixes.

        ``content_only``: the law with ``<pad>`` / ``<eos>`` suppressed, each step's softmax renormalized
        over the content words (what the toy PPO job samples and scores). Otherwise the raw model, whose
        content completions then sum to less than one.
        """
        return self._model_log_probs(model, batch_size)[1 if content_only else 0]

    @torch.no_grad()
    def _model_log_probs(self, model, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw, content-only) log-probs of every content completion; a forward pass over the V^(L−1)
        prefixes gives every next-token distribution, the last position covers all V endings."""
        self._check_enumerable()
        V, L, s = self.vocab_size, self.completion_length, self.num_special
        prefixes = torch.tensor(list(itertools.product(range(V), repeat=L - 1)), dtype=torch.long).reshape(-1, L - 1)
        device = next(model.parameters()).device
        raw_rows, content_rows = [], []
        for prompt in self.prompt_words:
            prompt_ids = torch.tensor(prompt) + s
            raw_chunks, content_chunks = [], []
            for start in range(0, len(prefixes), batch_size):
                prefix = prefixes[start : start + batch_size]
                ids = torch.cat([prompt_ids.expand(len(prefix), -1), prefix + s], dim=-1).to(device)
                logits = model(input_ids=ids).logits[:, len(prompt) - 1 :, :].double().cpu()
                for chunks, logp in (
                    (raw_chunks, torch.log_softmax(logits, -1)[..., s : s + V]),
                    (content_chunks, torch.log_softmax(logits[..., s : s + V], -1)),
                ):
                    steps = logp[:, : L - 1, :].gather(-1, prefix.unsqueeze(-1)).squeeze(-1).sum(-1)  # [n]
                    chunks.append((steps.unsqueeze(-1) + logp[:, L - 1, :]).reshape(-1))
            raw_rows.append(torch.cat(raw_chunks))
            content_rows.append(torch.cat(content_chunks))
        return torch.stack(raw_rows), torch.stack(content_rows)

    def evaluate_log_probs(
        self, log_probs: torch.Tensor, omega_prime: float | None = None, alpha_hat: float | None = None
    ) -> dict:
        """Expected rewards and KLs of a distribution over content completions given as log-probs.

        If ``log_probs`` sum to less than one (a raw model), the distribution is conditioned on content
        completions and ``off_support_mass`` is what is missing.
        """
        basic, addon = self.completion_rewards()
        mass = log_probs.exp().sum(-1)  # per prompt; < 1 if the model puts mass on special tokens
        conditional = log_probs - mass.log().unsqueeze(-1)
        p = conditional.exp()
        prior_lp = self.exact_prior_log_probs()
        result = {
            "basic": float((p * basic).sum(-1).mean()),
            "addon": float((p * addon).sum(-1).mean()),
            "kl_to_prior": float((p * (conditional - prior_lp)).sum(-1).mean()),
            "off_support_mass": float(1.0 - mass.mean()),
            "method": "exact",
        }
        result["total"] = result["basic"] + result["addon"]
        if omega_prime is not None and alpha_hat is not None:
            target_lp = self.exact_target_log_probs(omega_prime, alpha_hat)
            result["kl_to_target"] = float((p * (conditional - target_lp)).sum(-1).mean())
            result["kl_stderr"] = 0.0
        return result

    def evaluate(
        self,
        model,
        omega_prime: float,
        alpha_hat: float,
        num_samples: int = 4096,
        exact: bool | None = None,
        seed: int = 0,
        content_only: bool = True,
    ) -> dict:
        """Expected basic / add-on / total reward of ``model`` and KL(πθ ‖ exact target of (ω', α̂)).

        ``content_only`` (default): πθ is the model with ``<pad>`` / ``<eos>`` suppressed — the law the toy
        PPO job samples and scores (``suppress_token_ids``) — so its support is the targets' support;
        ``off_support_mass`` is then the probability the *raw* model would give to a completion with a
        special token (what the suppression removes). Otherwise πθ is the raw model conditioned on
        content completions. Exact by enumeration when V^L ≤ ``max_enumeration``; otherwise Monte Carlo
        over ``num_samples`` of the model's own completions scored with exact log-densities (unbiased;
        ``*_stderr`` are standard errors). Also returns ``kl_to_prior`` = KL(πθ ‖ exact prior).
        """
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 (a standard error needs two), got {num_samples}")
        was_training = model.training
        model.eval()
        try:
            if exact is None:
                exact = self.enumerable
            if exact:
                raw, content = self._model_log_probs(model, 4096)
                result = self.evaluate_log_probs(content if content_only else raw, omega_prime, alpha_hat)
                result["off_support_mass"] = float(1.0 - raw.exp().sum(-1).mean())
                return result
            return self._evaluate_monte_carlo(model, omega_prime, alpha_hat, num_samples, seed, content_only)
        finally:
            model.train(was_training)

    @torch.no_grad()
    def _evaluate_monte_carlo(
        self, model, omega_prime: float, alpha_hat: float, num_samples: int, seed: int, content_only: bool
    ) -> dict:
        from rpg_llm.ppo.sampling import sample_completions

        device = next(model.parameters()).device
        g = torch.Generator(device=device).manual_seed(seed)
        per_prompt = max(2, num_samples // len(self.prompt_words))
        suppress = self.special_token_ids if content_only else None
        stats = {k: [] for k in ("basic", "addon", "kl", "kl_prior", "on_support")}
        for row in self.prompt_words:
            prompt_ids = (torch.tensor(row) + self.num_special).expand(per_prompt, -1).to(device)
            out = sample_completions(
                model,
                prompt_ids,
                torch.ones_like(prompt_ids),
                self.completion_length,
                self.eos_token_id,
                self.pad_token_id,
                g,
                suppress_token_ids=suppress,
            )
            ids = out.completion_ids.cpu()
            content = self._content(ids)
            if content_only:  # P_raw(all content) = E_suppressed[Π_t raw content mass at step t]
                on_support = self._raw_content_log_mass(model, prompt_ids, out.completion_ids).exp()
            else:
                on_support = (content >= 0).all(-1).double()
            keep = (content >= 0).all(-1)  # all of them when content_only
            seq_lp = out.logprobs.double().cpu().sum(-1)
            first = torch.full((per_prompt,), row[-1])
            ys = content.clamp_min(0)
            stats["basic"].append(self.basic_reward(prompt_ids.cpu(), ids).double())
            stats["addon"].append(self.addon_reward(prompt_ids.cpu(), ids).double())
            stats["kl"].append((seq_lp - self.exact_log_probs(first, ys, omega_prime, alpha_hat))[keep])
            stats["kl_prior"].append((seq_lp - self.exact_log_probs(first, ys))[keep])
            stats["on_support"].append(on_support)
        cat = {k: torch.cat(v) for k, v in stats.items()}
        result = {
            "method": f"monte_carlo (n={len(cat['on_support'])})",
            "off_support_mass": float(1.0 - cat["on_support"].mean()),
        }
        for name, key in (("basic", "basic"), ("addon", "addon"), ("kl_to_target", "kl"), ("kl_to_prior", "kl_prior")):
            values = cat[key]
            result[name] = float(values.mean())
            result[f"{name}_stderr"] = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")
        result["kl_stderr"] = result["kl_to_target_stderr"]
        result["total"] = result["basic"] + result["addon"]
        return result

    def _raw_content_log_mass(self, model, prompt_ids: torch.Tensor, completion_ids: torch.Tensor) -> torch.Tensor:
        """Σ_t log Σ_{content w} π_raw(w | prompt, y_<t), [N]: the raw model's log-probability of staying on
        content words."""
        s, V, P, L = self.num_special, self.vocab_size, prompt_ids.shape[1], completion_ids.shape[1]
        logits = model(input_ids=torch.cat([prompt_ids, completion_ids], dim=-1)).logits[:, P - 1 : P + L - 1]
        logp = torch.log_softmax(logits.double(), dim=-1)
        return torch.logsumexp(logp[..., s : s + V], dim=-1).sum(-1).cpu()

    # ------------------------------------------------------------------ pretraining
    def _distill_prior(self, progress: bool = True):
        """Fit a tiny Llama to the exact prior's next-word distributions ("pretraining").

        Batches mix prior samples with uniform random completions, so the model also learns the
        prior on prefixes the prior rarely visits (customization moves there).
        """
        from transformers import LlamaForCausalLM

        cfg = self.config
        torch.manual_seed(cfg.seed)
        model_config = tiny_llama_config(
            self.tokenizer,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            max_positions=max(32, 2 * (cfg.prompt_length + cfg.completion_length)),
        )
        model = LlamaForCausalLM(model_config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.distill_lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / max(cfg.distill_steps, 1))
        g = torch.Generator().manual_seed(cfg.seed + 1)
        prior_policy = self.prior.policy.float()  # [L, V, V]
        L, V, s, P = cfg.completion_length, self.vocab_size, self.num_special, cfg.prompt_length
        prompts = torch.tensor(self.prompt_words)
        steps = range(cfg.distill_steps)
        if progress:
            from rich.progress import track

            steps = track(steps, description="distilling the toy-world prior", transient=True)
        for _ in steps:
            B = cfg.distill_batch_size
            prompt = prompts[torch.randint(len(prompts), (B,), generator=g)]
            word = prompt[:, -1]
            completion, targets = [], []
            uniform = torch.rand(B, generator=g) < 0.5
            for t in range(L):
                probs = prior_policy[t, word]  # [B, V]
                targets.append(probs)
                sampled = torch.multinomial(probs, 1, generator=g).squeeze(-1)
                word = torch.where(uniform, torch.randint(V, (B,), generator=g), sampled)
                completion.append(word)
            completion = torch.stack(completion, dim=1)
            ids = torch.cat([prompt, completion[:, :-1]], dim=-1) + s
            logits = model(input_ids=ids).logits[:, P - 1 :, :]  # [B, L, vocab]
            target = torch.zeros_like(logits)
            target[..., s : s + V] = torch.stack(targets, dim=1)
            loss = -(target * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        return model


def _as_text(items) -> list[str]:
    """TRL passes strings (standard format) or message lists (conversational): take the text."""
    texts = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, list):
            texts.append(" ".join(message.get("content", "") for message in item))
        else:
            texts.append(str(item))
    return texts
