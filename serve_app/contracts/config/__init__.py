"""Operator configuration: the `args` of a Serve config's application, validated strictly.

These models describe what an operator tunes (catalog, prices, limits, replicas, GPUs). They
are separate from the wire schemas and import nothing else from the project, so deployments
can use them. Unknown keys are errors (`extra="forbid"`).

One module per section: `base`, `local`, `ingress`, `commercial`, `operations`, and `gateway`
(the whole config); every name is re-exported here.
"""

from serve_app.contracts.config.base import (
    FALLBACKS_DESCRIPTION as FALLBACKS_DESCRIPTION,
)
from serve_app.contracts.config.base import (
    MODEL_ID_PATTERN as MODEL_ID_PATTERN,
)
from serve_app.contracts.config.base import (
    RESERVED_DEPLOYMENT_NAMES as RESERVED_DEPLOYMENT_NAMES,
)
from serve_app.contracts.config.base import (
    SHIPPED_CATALOG as SHIPPED_CATALOG,
)
from serve_app.contracts.config.base import (
    AutoscalingConfig as AutoscalingConfig,
)
from serve_app.contracts.config.base import (
    PriceConfig as PriceConfig,
)
from serve_app.contracts.config.base import (
    ReplicaConfig as ReplicaConfig,
)
from serve_app.contracts.config.base import (
    StrictModel as StrictModel,
)
from serve_app.contracts.config.commercial import (
    DEPLOYMENT_ONLY_FIELDS as DEPLOYMENT_ONLY_FIELDS,
)
from serve_app.contracts.config.commercial import (
    AnthropicProviderConfig as AnthropicProviderConfig,
)
from serve_app.contracts.config.commercial import (
    CommercialConfig as CommercialConfig,
)
from serve_app.contracts.config.commercial import (
    CommercialModelConfig as CommercialModelConfig,
)
from serve_app.contracts.config.commercial import (
    OpenAIProviderConfig as OpenAIProviderConfig,
)
from serve_app.contracts.config.commercial import (
    ProviderConfig as ProviderConfig,
)
from serve_app.contracts.config.commercial import (
    ProviderName as ProviderName,
)
from serve_app.contracts.config.commercial import (
    ProviderPlacement as ProviderPlacement,
)
from serve_app.contracts.config.gateway import (
    GatewayConfig as GatewayConfig,
)
from serve_app.contracts.config.ingress import (
    CircuitBreakerConfig as CircuitBreakerConfig,
)
from serve_app.contracts.config.ingress import (
    IngressConfig as IngressConfig,
)
from serve_app.contracts.config.local import (
    AdapterConfig as AdapterConfig,
)
from serve_app.contracts.config.local import (
    AdaptersConfig as AdaptersConfig,
)
from serve_app.contracts.config.local import (
    BatchingConfig as BatchingConfig,
)
from serve_app.contracts.config.local import (
    GenerationDefaults as GenerationDefaults,
)
from serve_app.contracts.config.local import (
    LocalModelConfig as LocalModelConfig,
)
from serve_app.contracts.config.local import (
    ModelTask as ModelTask,
)
from serve_app.contracts.config.operations import (
    AuthConfig as AuthConfig,
)
from serve_app.contracts.config.operations import (
    CacheConfig as CacheConfig,
)
from serve_app.contracts.config.operations import (
    LedgerConfig as LedgerConfig,
)
from serve_app.contracts.config.operations import (
    LoggingConfig as LoggingConfig,
)
from serve_app.contracts.config.operations import (
    MetricsConfig as MetricsConfig,
)
from serve_app.contracts.config.operations import (
    RateLimitConfig as RateLimitConfig,
)
from serve_app.contracts.config.operations import (
    SecurityConfig as SecurityConfig,
)
from serve_app.contracts.config.operations import (
    TracingConfig as TracingConfig,
)
from serve_app.contracts.config.operations import (
    UIConfig as UIConfig,
)
