"""Units of work that run on Ray: curation stages, data readers, training loops, evaluation.

Imports `modeling`, Ray, pyarrow, fsspec/s3fs and ffmpeg; never Prefect.
"""
