"""pySigma plugin: makes the hcm-soc processing pipeline available to sigma-cli as `-p hcm_soc`.

pySigma discovers pipelines in the `sigma.pipelines` namespace package (`sigma list pipelines`);
`sigma convert -t lucene -p hcm_soc RULE` then prints the same query as `hcm-soc rules convert RULE`.
The pipeline itself lives in `hcm_soc.detection.pipeline`.
"""

from __future__ import annotations

from sigma.processing.pipeline import ProcessingPipeline

from hcm_soc.detection.pipeline import hcm_soc_pipeline as _hcm_soc_pipeline
from hcm_soc.detection.pipeline import register_sigma_aliases as _register_sigma_aliases

# pySigma takes every public function of a plugin module for a pipeline: export only ours
__all__ = ["hcm_soc", "pipelines"]

# sigma-cli imports plugins before it parses rules: `|utf16le` then reads as in hcm-soc
_register_sigma_aliases()


def hcm_soc() -> ProcessingPipeline:
    """The hcm-soc pipeline (Sigma log sources and fields -> hcm-soc's ECS events)."""
    return _hcm_soc_pipeline()


pipelines = {"hcm_soc": hcm_soc}
