"""The Ray Serve deployments behind the ingress: local models, provider proxies and the
shared rate limiter (and the demo trainers). They import only `serve_app.contracts`."""
