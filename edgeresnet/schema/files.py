"""The file names of an artifact folder and the schema each JSON document names."""

FP32_MODEL_FILE = "model.fp32.onnx"
REPORT_FILE = "report.json"
MODEL_CARD_FILE = "model-card.json"  # the resolved model description, as a card `--card` reads
REPORT_HTML = "report.html"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"  # ed25519 over the exact bytes of manifest.json
DIGEST_SUFFIX = ".manifest.sha256"
GOLDEN_FOLDER = "golden"
DEVICE_REPORT_FILE = "device-report.json"  # written on the board by run.py --check

REPORT_SCHEMA = "edgeresnet.report/1"
MANIFEST_SCHEMA = "edgeresnet.manifest/1"
DEVICE_REPORT_SCHEMA = "edgeresnet.device-report/1"  # targets/templates/device_check.py writes it on the device
GOLDEN_SCHEMA = "edgeresnet.golden/1"  # read by targets/templates/device_check.py and targets/tvm/native/
GOLDEN_META_FILE = f"{GOLDEN_FOLDER}/golden.json"
