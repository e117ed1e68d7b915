"""The job-state core shared by the Lambda handlers and the GPU container.

One module owns each thing: ``jobs`` the table items, ``layout`` the S3 keys, ``purge`` the
deletion of a job's prefix, ``stages`` the six stages and their progress bands. Nothing here
imports torch, trimesh or numpy.
"""
