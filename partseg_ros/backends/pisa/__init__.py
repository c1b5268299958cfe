"""PISA (InstructPart sec. 3.3): frozen DINOv2 + LLaMA-family <SEG> token + SAM-style decoder."""
