"""SAM 3's official post-processing thresholds, importable without torch.

Values of transformers' ``Sam3ImageProcessor.post_process_instance_segmentation``
(``threshold=0.3`` on the query score times the presence score,
``mask_threshold=0.5`` on the upsampled mask probability); the processor
applies no NMS. Kept in a torch-free module so configuration code (the
Grounded-SAM backend's defaults) can read them without loading torch.
"""

SAM3_SCORE_THRESHOLD = 0.3
SAM3_MASK_THRESHOLD = 0.5
