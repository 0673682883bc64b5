"""More CF epochs for a trained hybrid model (``HybridModel.continue_training``)."""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from merch_app.jobs import CancelToken, Progress
from merch_app.model import cf_module as cf
from merch_app.model.optimizers import HybridOptimizer
from merch_app.model.interactions import Interactions


def more_epochs(model, interactions: Interactions, epochs: int,
                progress: Optional[Callable[[Progress], None]] = None,
                cancel: Optional[CancelToken] = None) -> "cf.HybridNet":
    """A net started from ``model``'s parameters, trained ``epochs`` more passes over ``interactions``.

    Implicit models train on the weighted (user, item) pairs, explicit ones on
    the ratings; the combiner is not touched.  Returns the net (the caller
    copies its state into the model).
    """
    cfg, a = model.config, model.arrays
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            torch.set_num_threads(max(1, int(cfg.threads)))
            net = cf.HybridNet(len(model.user_ids), model.n_items, a["T_u"], a["T_i"], cfg.dim, cfg.dropout,
                               cfg.seed, sparse_ids=model.sparse_id_grads)
            with torch.no_grad():
                for name in ("P", "Q", "A", "B", "W", "b_item", "b_user", "w_text_bias"):
                    getattr(net, name).copy_(torch.from_numpy(np.asarray(a[name], np.float32)))
                net.global_bias.fill_(model.mu if model.explicit else 0.0)
            opt = HybridOptimizer(net, cfg.lr)
            rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)
            if model.explicit:
                r = interactions.subset((interactions.event_type == "rating") & np.isfinite(interactions.value))
                rep = cf.Reporter(progress, epochs * max(1, math.ceil(len(r) / cfg.batch_size)))
                for e in range(1, epochs + 1):
                    perm = rng.permutation(len(r))
                    cf.run_explicit_epoch(net, opt, cfg, (r.user_idx[perm], r.item_idx[perm], r.value[perm]),
                                          gen, rep, cancel, f"update {e}/{epochs}", e)
            else:
                pairs = interactions.pairs()
                cdf = cf.popularity_sampler(interactions.item_idx, model.n_items, cfg.neg_power)
                rep = cf.Reporter(progress, epochs * max(1, math.ceil(len(pairs[0]) / cfg.batch_size)))
                for e in range(1, epochs + 1):
                    loss = cf.run_implicit_epoch(net, opt, cfg, pairs, cdf, rng, gen, rep, cancel,
                                                 f"update {e}/{epochs}", e)
                    rep.tick(f"update {e}/{epochs}", {"phase": "train", "epoch": e, "loss": loss,
                                                      "epoch_end": True}, force=True)
    finally:
        torch.set_num_threads(threads)
    return net
