"""The reconstruction engine: plain PyTorch/trimesh over a local job folder, no AWS.

A job folder mirrors the job's S3 prefix (``input/``, ``work/{stage}/``, ``output/``), so the
stage runner only has to copy prefixes in and out.
"""
