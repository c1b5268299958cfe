"""InstructSAM-style backend: Qwen3-VL with an instance-query bank driving SAM 3 (arXiv 2605.26102)."""
