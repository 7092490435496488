"""Durable jobs, no Ray: the job record, its store, tile checkpoints and webhooks.

Anything longer than one model call (large renders, upscales, pipeline runs,
campaigns) is a `Job` kept in the artifact store; the supervisor actor runs,
resumes and adopts jobs from there, so a job outlives any process.
"""
