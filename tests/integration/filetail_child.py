"""A file collector in its own process, for the crash test (tests/integration/test_filetail.py).

    python tests/integration/filetail_child.py ES_URL PREFIX NAMESPACE LOG_FILE STATE_DIR

Reads LOG_FILE once (follow=False, syslog format) into the events of PREFIX /
NAMESPACE (templates already installed by the test), saving offsets every 0.2 s,
and prints the collector's and the writer's counters as one JSON line at the end.
The test kills it with SIGKILL part-way and runs it again.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from hcm_soc.collectors.definition import FileInput, SourceDefinition
from hcm_soc.collectors.filetail import FileTailCollector
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.config import load_settings
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.client import make_client
from hcm_soc.store.names import IndexNames

SOURCE_NAME = "crash-test-syslog"


def main(argv: list[str]) -> int:
    es_url, prefix, namespace, log_file, state_dir = argv
    es = make_client(load_settings(env={}), urls=[es_url])
    names = IndexNames(prefix, namespace)
    definition = SourceDefinition(
        name=SOURCE_NAME, type="file", format="syslog", file=FileInput(paths=[log_file])
    )
    # small batches: some are sent between two offset saves, so a kill leaves events
    # in Elasticsearch beyond the saved offset (the re-read must turn them into duplicates)
    writer = BulkWriter(es, names, flush_interval=None, max_docs=500)
    pipeline = IngestPipeline.for_definition(writer, names, definition)
    collector = FileTailCollector(
        definition, pipeline, state_dir=Path(state_dir), follow=False, checkpoint_interval=0.2
    )
    collector.run(threading.Event())
    writer.close()
    print(
        json.dumps({"collector": collector.stats(), "writer": writer.stats(), **pipeline.stats()}), flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
