#!/bin/sh
# Regenerate every test-vector file under tests/data/ (deterministic).
# Needs the oracle virtualenv (Synapse + its libraries), e.g.:
#   PY=/work/shared/oracle/.venv/bin/python sh tests/data/gen/make_all.sh
set -eu
export PYTHONDONTWRITEBYTECODE=1
PY=${PY:-/work/shared/oracle/.venv/bin/python}
cd "$(dirname "$0")"
"$PY" canonical_json.py
"$PY" signing.py
"$PY" redaction.py
"$PY" auth_rules.py
"$PY" server_acl.py
rm -f ../state_res/*.json
"$PY" state_res_scenarios.py
"$PY" ruma_convert.py
"$PY" state_res_expected.py
"$PY" state_res_expected.py --check
python3 check_independent.py
