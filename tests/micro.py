"""A hand-weighted micro-model whose every node is linear, with the hook interface dfa uses.

Embeddings `E[token]`; per layer, head `h` reads the causal mean of the residual stream over
positions, `z_h = mean_{q<=p}(resid_q) @ A[l, h]`, and writes `z_h @ O[l, h]`; the MLP writes
`resid @ M[l]`; logits are `resid @ U`. Everything is linear in everything upstream, so a node's
exact patching effect equals its first-order (EAP) estimate."""

from __future__ import annotations

from types import SimpleNamespace

import torch


class LinearMicro(torch.nn.Module):
    def __init__(
        self, n_layers: int = 2, n_heads: int = 2, d_model: int = 4, d_head: int = 2, vocab: int = 6
    ):
        super().__init__()
        g = torch.Generator().manual_seed(7)

        def w(*shape):  # small integer weights, scaled: hand-sized, exactly representable
            return torch.randint(-2, 3, shape, generator=g).double() / 2

        self.cfg = SimpleNamespace(n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_vocab=vocab)
        self.E, self.U = w(vocab, d_model), w(d_model, vocab)
        self.A, self.O = w(n_layers, n_heads, d_model, d_head), w(n_layers, n_heads, d_head, d_model)
        self.M = w(n_layers, d_model, d_model)

    def run_with_hooks(self, tokens: torch.Tensor, fwd_hooks=()) -> torch.Tensor:
        hooks: dict[str, list] = {}
        for name, fn in fwd_hooks:
            hooks.setdefault(name, []).append(fn)

        def at(name: str, x: torch.Tensor) -> torch.Tensor:
            for fn in hooks.get(name, []):
                x = fn(x, hook=SimpleNamespace(name=name))
            return x

        resid = at("blocks.0.hook_resid_pre", self.E[tokens])
        pos = tokens.shape[1]
        causal_mean = torch.tril(torch.ones(pos, pos, dtype=resid.dtype)) / torch.arange(1, pos + 1)[:, None]
        for layer in range(self.cfg.n_layers):
            mixed = torch.einsum("qk,bkd->bqd", causal_mean, resid)
            z = at(f"blocks.{layer}.attn.hook_z", torch.einsum("bpd,hde->bphe", mixed, self.A[layer]))
            resid = resid + torch.einsum("bphe,hed->bpd", z, self.O[layer])
            resid = resid + at(f"blocks.{layer}.hook_mlp_out", resid @ self.M[layer])
        return resid @ self.U

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.run_with_hooks(tokens)


def micro_batch(n: int = 6, pos: int = 5, vocab: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Clean/corrupt token rows of one length, answer 0 against wrong 1 at the last position."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (n, pos), generator=g)
    corrupt = torch.randint(0, vocab, (n, pos), generator=g)
    answers, wrongs = torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long)
    return {
        "clean": clean,
        "corrupt": corrupt,
        "last": torch.full((n,), pos - 1),
        "answers": answers,
        "wrongs": wrongs,
        "answers_mask": answers >= 0,
        "wrongs_mask": wrongs >= 0,
    }


class FullLogits:
    """A bridge model that ignores the unembedding's cut (`dfa.core.interventions.UNEMBED_IN`), so
    every pass unembeds every position as before answer-only unembedding: the reference that
    the answer-only path must equal."""

    def __init__(self, model):
        self.model, self.cfg = model, model.cfg

    def parameters(self):
        return self.model.parameters()

    def run_with_hooks(self, tokens: torch.Tensor, fwd_hooks=()) -> torch.Tensor:
        from dfa.core.interventions import UNEMBED_IN

        logits = self.model.run_with_hooks(tokens, fwd_hooks=[h for h in fwd_hooks if h[0] != UNEMBED_IN])
        assert logits.shape[1] == tokens.shape[1]  # every position unembedded
        return logits

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)


def ragged(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`batch` with its answer positions spread over the row (as right-padded prompts have)."""
    n, pos = batch["clean"].shape
    return {**batch, "last": torch.arange(n) % pos}
