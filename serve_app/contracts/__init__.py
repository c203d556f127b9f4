"""What every process shares and that imports nothing else of ours: the error tree, the
wire types that cross handles, the config models and shipped catalog, pricing, limit specs
and the metric machinery. Deployments import only this package of the gateway.
"""
