"""Hosted models: a provider's HTTP API behind the same contract as a local model server.

- `config`: the `remote:` section of a model entry (family 'remote');
- `providers/`: one small adapter per provider (request building, response parsing);
- `sizes`: the closest size a provider offers, then resize and centre-crop to exact;
- `retry`: which answers are retried and after how long;
- `limits`: the concurrency and requests-per-minute bound shared by every replica;
- `caller`: one render through an adapter, limited, retried, sized and recorded;
- `record`: what a run record keeps of a hosted call.

Nothing here imports Ray: the shared limiter's actor lives in `actors.remote_limiter`
and the Serve deployment in `serve.remote_server`.
"""
