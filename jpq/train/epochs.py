"""How much training a run's configuration gives it, for comparing methods at equal training.

``epochs_total`` counts the configured epochs of every phase the method runs: the warm-up, the
search and the fine-tune, plus, for the sequential baselines (``pit``, ``pit_mixprec``), PIT's own
search and fine-tune, which use the same ``trainer.search`` / ``trainer.finetune`` settings (docs/method.md
§7). A cached warm-up counts: the network was trained for it, just not in this process.
"""

from __future__ import annotations

from omegaconf import DictConfig

from jpq.config import a_bits_of, w_bits_of


def epochs_total(cfg: DictConfig) -> int:
    """Configured training epochs of one run (early stopping may end a phase sooner)."""
    t, phases, method = cfg.trainer, list(cfg.phases), cfg.method.name
    total = t.warmup.epochs if "warmup" in phases else 0
    if method in ("pit", "pit_mixprec"):
        total += t.search.epochs + t.finetune.epochs
        if method == "pit":
            return int(total)
    searched = len(w_bits_of(cfg)) > 1 or len(a_bits_of(cfg)) > 1
    total += t.search.epochs if "search" in phases and searched else 0
    total += t.finetune.epochs if "finetune" in phases else 0
    return int(total)
