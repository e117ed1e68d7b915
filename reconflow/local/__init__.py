"""The local stack: the whole pipeline on one machine, on moto, with no AWS account and no Docker.

``stack.LocalStack`` deploys ``template.yaml`` into a moto server (``deploy``; ``template`` fills the
state machine's substitutions) and wires the pieces moto does not run by itself: Batch jobs as local
processes (``executor``, through ``moto_batch``), Lambda functions as in-process calls
(``lambdas``), event deliveries to them (``notifications``, ``status_events``, ``schedule``) and the
HTTP API (``http_api``). ``probe`` watches jobs through the API; ``engine_profile`` shrinks the
engine's draft sizes for tests.
"""
