"""Coefficient tables that stay exact across dtype changes (Clebsch-Gordan and harmonic
coefficients are irrational)."""

from __future__ import annotations

import torch
from torch import nn


class Float64Tables(nn.Module):
    """A module whose coefficient buffers keep a float64 master copy: each buffer is re-derived from
    its master on every .to()/.double()/.float(), since a float32 round trip would otherwise cost a
    float64 model its last 8 digits. ``register_table`` in place of ``register_buffer``."""

    def register_table(self, name: str, table: torch.Tensor, persistent: bool = True) -> None:
        self.__dict__.setdefault("_tables64", {})[name] = table.to(torch.float64)    # buffer name -> master
        self.register_buffer(name, table.to(torch.get_default_dtype()), persistent=persistent)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        masters = self.__dict__.get("_tables64", {})
        for name, master in masters.items():
            buf = getattr(self, name)
            masters[name] = master.to(buf.device)
            setattr(self, name, masters[name].to(buf.dtype))
        return self
