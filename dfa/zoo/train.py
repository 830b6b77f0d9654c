"""Train one toy model on the task generators' train splits (Lightning).

Roles: `default_config` gives a spec's role settings, `dfa.zoo.callbacks.RoleWarmup` draws only the
role texts first, and `ValChecks` checks the roles too; the role texts carry no extra answer loss. A
built model's role census is `dfa.zoo.card.role_census`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lightning as L
import torch
from torch.utils.data import DataLoader

from dfa.core.errors import DfaError
from dfa.zoo.callbacks import RoleWarmup, StepReporter, ValChecks
from dfa.zoo.sampler import TaskBatches
from dfa.zoo.spec import MAX_POSITIONS, ToySpec
from dfa.zoo.text import GROUP_WEIGHTS, RANDOM_GROUPS, STRIDED_GROUPS, TEXT_GROUPS, TaskText

ROLE_BARS = {"induction": 0.3, "previous_token": 0.3}  # the target (best head's score) per role
# The role texts' sampling weights in a build that grows roles (the task groups' weights sum to
# about 25): enough for the val checks to see the roles hold after the warm-up, and boosted
# while one is short.
ROLE_TEXT_WEIGHTS = {"repeats": 1.0, "echo": 0.3}


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    text_weight: float = 1.0  # next-token loss over every token of the text groups' rows
    # Extra loss on the answer token of the task and text rows; never on the role texts (the
    # strided groups). The answer term is a mean over a batch's 32 answers, so each weighs about
    # 40 times a token of the text term: on a repeated span's first predictable token it kept
    # induction from forming (toy-neox-s, 2000 steps of spans and echoes: best induction head 0.05
    # with it, 0.89 without).
    answer_weight: float = 2.0
    # The groups whose rows carry the next-token loss on every token (None: all of them); the
    # other task prompts' tokens (options, operands) are noise to predict, and a loss on them
    # slowed the circuits: toy-gpt2-s learnt mcqa to 0.98 (val) on answers only and stayed at
    # chance (0.52) with a quarter-weight text loss on every row.
    text_groups: tuple[str, ...] | None = TEXT_GROUPS
    group_weights: dict[str, float] = field(default_factory=lambda: dict(GROUP_WEIGHTS))
    # Batches that mix the groups (by weight), bucketed by length so that they pad little,
    # instead of one group per batch. Deeper models need them: at 1200 steps toy-gpt2-l was
    # still at chance on sva with one group per batch, and at 100% with mixed batches.
    mixed: bool = False
    # Val checks: every `check_every` steps each task is scored on `val_pairs` pairs of its val
    # split (never test). A task short of the bar by `margin` is drawn `boost` times more often
    # until it reaches it, and training stops once every task has (`steps` is then a ceiling).
    # Within a short task, a variation family short of the accuracy bar by `margin` is drawn
    # `boost` times more often again: number-word arithmetic lagged the digits by 20-45 points,
    # hidden inside a task accuracy just under the bar. The boosts take rows from the tasks
    # that pass, never from the texts (atlas, glossary, counting lines, tables): the atlas is
    # what capitals' test countries need.
    # ioi and mcqa are learnt suddenly, after a number of rows that varies from run to run;
    # the checks give the rows to the tasks still short, and end a model's training once
    # none is. 0 turns the checks off.
    check_every: int = 1000
    # 400: the corrupt share is a ratio of means that a few prompts sway; on seed 1's NeoX
    # ladder, greater-than's first 100 val pairs put it at 4-12%, 400 at 23-32% (test: 25-35%).
    val_pairs: int = 400
    margin: float = 0.03
    # The corrupt share is the noisier count: greater-than's corrupt metric runs from about +1
    # to -1 with the prompt's year, and the share of 200 prompts has a standard deviation of
    # 0.05 from sample to sample (of 400, 0.035). Its margin is wider.
    share_margin: float = 0.08
    boost: float = 3.0
    # Role checks, at the same steps, for the roles named here (default_config names the spec's;
    # `dfa zoo trial --role-bar induction=0.3` tries them): the best head's score on repeated
    # spans (`dfa.core.roles`' definitions, on a probe of other random tokens than the cards'
    # census). A role short of its bar (plus `margin`) draws its text group `boost` times more
    # often (induction: the repeated spans; previous-token: the echo rows), and training
    # does not stop while a role is short.
    role_bars: dict[str, float] = field(default_factory=dict)
    # The first `role_warmup` steps draw the role texts alone, by these weights (0: no warm-up,
    # as the shipped build). Induction heads appear suddenly after a number of repeated spans
    # (toy-neox-s on spans alone: none at step 1000, 0.87 at 1250); a 16% share of mixed batches
    # had none by step 3000. The steps count within `steps`.
    role_warmup: int = 0
    role_warmup_weights: dict[str, float] = field(default_factory=lambda: {"repeats": 1.0, "echo": 0.3})
    # The role texts' rows (the strided groups) start at a random position: half of them at 0
    # (`role_unshifted`), the rest anywhere from 0 up to `role_offset` (their position_ids
    # shifted; never past the model's last position), drawn afresh each time a row is drawn;
    # every other row starts at 0 (role_offset 0: all of them, as the shipped NeoX build). On
    # learnt absolute positions this is what grows an induction head: toy-gpt2-s on spans at
    # random positions had one of 0.68-0.70 by step 2500 (seeds 0 and 1, plain loop); on spans
    # after a random prefix of tokens (BOS always at 0), none by step 6500 with any recipe tried
    # (README). The unshifted half keeps position 0 from telling the role texts from the task
    # rows, which always start there: with every span shifted, the built model's induction
    # head scored 0.56 on the census probe shifted by 10-20 positions and 0.25 on the probe
    # itself; in a plain loop, unshifted echo rows beside shifted spans took the probe's best
    # induction head from 0.70 to 0.05 in 250 steps, and 0.73 with half the spans unshifted.
    role_offset: int = 0
    role_unshifted: float = 0.5
    # Each time a row of a random role text (zoo.text.RANDOM_GROUPS: spans, echoes) is drawn, its
    # tokens are renamed by a fresh random permutation of the vocabulary (special tokens kept), so
    # no row is seen twice. The text holds 20000 rows of each, drawn about five times each in a
    # 3000-step warm-up: toy-gpt2-s (plain loop, shifted spans) learnt those rows' pairs of
    # neighbours (span loss 5.8, 6.8 on unseen spans at step 1500) and its induction head came
    # later than on fresh spans (0.19 against 0.36 at step 2250).
    role_relabel: bool = False


def pad_rows(
    rows: list[tuple[list[int], int]],
    pad_id: int,
    labelled: list[tuple[int, int] | None] | None = None,
    answered: list[bool] | None = None,
    offsets: list[int] | None = None,
    max_positions: int = MAX_POSITIONS,
) -> dict[str, torch.Tensor]:
    """Right-padded inputs, next-token labels, the position that predicts each row's answer, and
    whether the row's answer carries the extra answer loss (`answered`; every row when None).
    Labels are -100 on padding. Row `i` is labelled on its tokens `start, start + step, ...` to
    its end where `labelled[i]` is `(start, step)` (`(1, 1)`: every token), and on its answer
    alone where it is None (every token of every row when `labelled` is None). With `offsets`,
    `position_ids` too: row `i` at positions `offsets[i], offsets[i] + 1, ...` (its padding
    capped at the last of `max_positions`; without, the model numbers every row from 0)."""
    width = max(len(r) for r, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    answer_pos = torch.tensor([a - 1 for _, a in rows])
    for i, (r, a) in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        start, step = (1, 1) if labelled is None else labelled[i] or (a, len(r))
        labels[i, start - 1 : len(r) - 1 : step] = torch.tensor(r[start::step])
    answered_rows = torch.ones(len(rows), dtype=torch.bool) if answered is None else torch.tensor(answered)
    batch = {"input_ids": ids, "labels": labels, "answer_pos": answer_pos, "answered": answered_rows}
    if offsets is not None:
        for (r, _), o in zip(rows, offsets, strict=True):
            if o < 0 or o + len(r) > max_positions:
                raise DfaError(f"A row of {len(r)} tokens at offset {o} runs past {max_positions} positions.")
        start = torch.tensor(offsets)[:, None]
        batch["position_ids"] = (start + torch.arange(width)[None]).clamp(max=max_positions - 1)
    return batch


def relabel_rows(
    rows: list[tuple[list[int], int, str]], candidates: torch.Tensor, gen: torch.Generator
) -> list[tuple[list[int], int, str]]:
    """Rows `(row, answer_at, group)` with the tokens of each random role text's row (a group of
    RANDOM_GROUPS) renamed by its own random permutation of `candidates` (every other token id,
    BOS among them, kept), the other rows as they are (TrainConfig.role_relabel)."""
    out = []
    size = int(candidates.max()) + 1
    for row, answer_at, group in rows:
        if group in RANDOM_GROUPS:
            lut = torch.arange(max(size, max(row) + 1))
            lut[candidates] = candidates[torch.randperm(len(candidates), generator=gen)]
            row = lut[torch.tensor(row)].tolist()
        out.append((row, answer_at, group))
    return out


def role_offsets(
    rows: list[tuple[list[int], int, str]],
    most: int,
    gen: torch.Generator,
    unshifted: float = 0.0,
    max_positions: int = MAX_POSITIONS,
) -> list[int]:
    """`pad_rows`' `offsets` for rows `(row, answer_at, group)`: a role text's row (a strided
    group) starts at 0 with probability `unshifted`, else at a position drawn uniformly from 0
    to `most` (fewer where the row would run past `max_positions`); every other row at 0
    (TrainConfig.role_offset, role_unshifted)."""
    out = []
    for row, _, group in rows:
        room = min(most, max_positions - len(row)) if group in STRIDED_GROUPS else 0
        shift = room > 0 and float(torch.rand((), generator=gen)) >= unshifted
        out.append(int(torch.randint(room + 1, (1,), generator=gen)) if shift else 0)
    return out


def label_spans(
    rows: list[tuple[list[int], int, str]], text_groups: set[str] | None
) -> list[tuple[int, int] | None]:
    """`pad_rows`' `labelled` for rows `(row, answer_at, group)`: the strided groups from their
    answer on, every `STRIDED_GROUPS[group]`-th token (a repeated span's second copy, which
    induction can predict, its first copy being random; an interleaved run's items, not its
    random fillers), the text groups on every token, the other task rows on their answer alone."""
    return [
        (a, STRIDED_GROUPS[g])
        if g in STRIDED_GROUPS
        else (1, 1)
        if text_groups is None or g in text_groups
        else None
        for _, a, g in rows
    ]


class ToyLM(L.LightningModule):
    """A Hugging Face causal LM trained on the next-token loss over the labelled positions (every
    token of the text groups' rows, the answer of the others) plus an extra loss on the answer
    token."""

    def __init__(self, model, config: TrainConfig):
        super().__init__()
        self.model = model
        self.config = config

    def training_step(self, batch, _):
        # Only the labelled positions are unembedded: with the task rows trained on their answer
        # alone, most positions carry no loss, and the unembedding is a third of a small
        # model's compute.
        labels = batch["labels"]
        hidden = self.model.base_model(
            input_ids=batch["input_ids"], position_ids=batch.get("position_ids")
        ).last_hidden_state
        unembed = self.model.get_output_embeddings()
        rows = batch["answered"].nonzero().flatten()
        answer = (
            torch.nn.functional.cross_entropy(
                unembed(hidden[rows, batch["answer_pos"][rows]]), labels[rows, batch["answer_pos"][rows]]
            )
            if len(rows)
            else hidden.new_zeros(())
        )
        loss = self.config.answer_weight * answer
        if self.config.text_weight:
            where = labels != -100
            text = torch.nn.functional.cross_entropy(unembed(hidden[where]), labels[where])
            loss = loss + self.config.text_weight * text
        self.log_dict({"loss": loss, "answer": answer}, prog_bar=True, on_step=True)
        return loss

    def configure_optimizers(self):
        c = self.config
        decay = [p for p in self.model.parameters() if p.ndim >= 2]  # matrices and embeddings
        rest = [p for p in self.model.parameters() if p.ndim < 2]  # biases and LayerNorm
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=c.lr,
            betas=(0.9, 0.98),
        )

        def schedule(step: int) -> float:
            if step < c.warmup:
                return (step + 1) / c.warmup
            progress = (step - c.warmup) / max(1, c.steps - c.warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def default_config(spec: ToySpec, steps: int | None = None) -> TrainConfig:
    """The training a spec is built with (`steps` overrides, for quick trials): with the role
    texts, their warm-up and their bars where the spec grows roles."""
    config = TrainConfig(steps=steps or spec.steps, lr=spec.lr, mixed=spec.mixed)
    r = spec.recipe
    if r.roles:
        config.group_weights |= dict(r.texts) or ROLE_TEXT_WEIGHTS
        config.role_bars = {role: ROLE_BARS[role] for role in r.roles}
        config.role_warmup = r.warmup
        config.role_warmup_weights = dict(r.warmup_texts) or config.role_warmup_weights
        config.role_offset = r.offset
        config.role_relabel = r.relabel
    return config


def train_toy(
    spec: ToySpec,
    tokenizer,
    text: TaskText,
    seed: int,
    config: TrainConfig | None = None,
    progress_queue=None,
    log: dict | None = None,
):
    """A trained HF model for `spec`; `log` (a dict) receives the val checks and the steps
    trained. Training runs on one CPU thread, so the result depends on the seed only, not on
    the machine's core count (two ladders build in parallel instead)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(
            spec,
            tokenizer,
            text,
            seed,
            config or default_config(spec),
            progress_queue,
            {} if log is None else log,
        )
    finally:
        torch.set_num_threads(threads)


def _train(
    spec: ToySpec, tokenizer, text: TaskText, seed: int, config: TrainConfig, progress_queue, log: dict
):
    from transformers import AutoModelForCausalLM

    from dfa.core.roles import candidate_tokens

    L.seed_everything(seed, workers=True, verbose=False)
    hf_config = spec.hf_config(len(tokenizer), tokenizer.bos_token_id)
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager")
    module = ToyLM(model, config)
    groups = None if config.text_groups is None else set(config.text_groups)
    members, weights, keys = text.groups(config.group_weights)
    sampler = TaskBatches(
        members,
        weights,
        config.steps,
        config.batch_size,
        seed,
        mixed=config.mixed,
        lengths=[len(row) for row, _ in text.rows],
    )
    callbacks: list[L.Callback] = []
    if config.check_every:  # first: the checks take the sampler's weights as their base
        callbacks.append(ValChecks(tokenizer, seed, sampler, keys, config, log))
    if config.role_warmup:
        callbacks.append(RoleWarmup(sampler, keys, config.role_warmup_weights, config.role_warmup))
    if progress_queue is not None:
        callbacks.append(StepReporter(progress_queue, (spec.family, spec.name)))
    offset_gen, relabel_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    candidates = candidate_tokens(tokenizer, len(tokenizer))

    def collate(rows):
        if config.role_relabel:
            rows = relabel_rows(rows, candidates, relabel_gen)
        return pad_rows(
            [(row, answer_at) for row, answer_at, _ in rows],
            tokenizer.pad_token_id,
            label_spans(rows, groups),
            [g not in STRIDED_GROUPS for _, _, g in rows],
            role_offsets(rows, config.role_offset, offset_gen, config.role_unshifted)
            if config.role_offset
            else None,
        )

    loader = DataLoader(text.labelled(), batch_sampler=sampler, collate_fn=collate)
    trainer = L.Trainer(
        max_steps=config.steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        deterministic=True,
        enable_progress_bar=progress_queue is None,
        callbacks=callbacks,
    )
    trainer.fit(module, loader)
    log["steps"] = trainer.global_step
    model.eval()
    return model
