"""Hydra configs of sr-lightning, shipped in the wheel as the package `sr_lightning.conf` (pkg://sr_lightning.conf).

Hydra's pkg:// config source needs this file; the group folders below are plain data folders."""
