"""Benchmark evaluation of many checkpoints: methods x sets through the Lightning test loop, the papers' tables,
cost columns and the PSNR-vs-MACs plot (`python -m sr_lightning.benchmark`)."""
