# Records sglang-0.5.23-custom-labels-text-0.0.4.txt (tests/data/gateways/SOURCES.md). Needs the sglang 0.5.23 wheel
# unzipped (*.py) under ./src, stubs.py of tests/data/engines/SOURCES.md beside it, and a venv with
# prometheus_client 0.26.0 and msgspec: python record.py > sglang-0.5.23-custom-labels-text-0.0.4.txt
# Drive SGLang 0.5.23's own TokenizerMetricsCollector (sglang/srt/observability/metrics_collector.py) on CPU,
# with one allowed custom label, `team` (--tokenizer-metrics-allowed-custom-labels team): the collector's
# labels as tokenizer_metric_labels() builds them (the custom label starting empty), each request's
# labels updated with its custom labels as the tokenizer manager does (labels.update(custom_labels)).
import sys, types, os
sys.path.insert(0, os.path.dirname(__file__))
import stubs, tempfile
os.environ['PROMETHEUS_MULTIPROC_DIR'] = tempfile.mkdtemp()  # SGLang's HTTP server always sets this
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src', 'sglang')
stubs.install(['torch', 'triton', 'sglang.srt.model_executor', 'sglang.srt.server_args', 'sglang.srt.disaggregation',
               'sglang.srt.managers', 'sglang.srt.utils', 'sglang.srt.observability.scheduler_stage_metrics',
               'sglang.srt.runtime_context'])
for pkg in ['sglang', 'sglang.srt', 'sglang.srt.observability']:
    m = types.ModuleType(pkg); m.__path__ = [os.path.join(SRC, *pkg.split('.')[1:])]; sys.modules[pkg] = m
import sglang.srt.observability.metrics_collector as mc
class _None:
    def __getattr__(self, n): return None
mc.get_observability = lambda: _None()
base = {'model_name': 'meta-llama/Llama-3.1-8B-Instruct', 'engine_type': 'unified', 'team': ''}
col = mc.TokenizerMetricsCollector(server_args=None, labels=base)
for team, prompt, generation, cached in (('search', 1024, 128, 256), ('support', 300, 64, 0), ('', 200, 20, 0)):
    labels = dict(base)
    if team:
        labels.update({'team': team})  # the request's x-custom-labels header
    col.observe_one_finished_request(labels, prompt_tokens=prompt, generation_tokens=generation, cached_tokens=cached,
        e2e_latency=1.0, has_grammar=False, is_streaming=False, time_per_output_token=0.01,
        cached_tokens_details={'device': cached, 'host': 0} if cached else None)
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
encoder, ct = choose_encoder(os.environ.get('ACCEPT', ''))
sys.stderr.write('Content-Type: ' + ct + '\n')
sys.stdout.buffer.write(encoder(registry))
