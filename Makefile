# Two commands on a fresh machine: `make run` (the service on the embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run test install lint catalogs

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/workervoice db upgrade
	@if command -v espeak-ng >/dev/null && command -v sox >/dev/null; then \
		$(BIN)/workervoice audio synth; \
	else \
		echo "espeak-ng or sox is not installed: voice falls back to text-to-speech" \
		     "(Swahili in English); apt-get install espeak-ng sox, then workervoice audio synth"; \
	fi
	$(BIN)/workervoice demo
	@echo "serving http://localhost:$(PORT)  (try: $(BIN)/workervoice simulate sms +8801711000001)"
	$(BIN)/gunicorn --bind 127.0.0.1:$(PORT) --workers 1 --threads 8 'gateway:create_app()'

test: install
	$(PY) -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy gateway store aggregator

catalogs: install
	$(BIN)/pybabel extract -F babel-flows.cfg --project=WorkerVoice --copyright-holder=WorkerVoice -o locales/messages-flows.pot .
	$(BIN)/pybabel extract -F babel-reports.cfg --project=WorkerVoice --copyright-holder=WorkerVoice -o locales/messages-reports.pot .
	$(BIN)/pybabel extract -F babel-service.cfg -k N_ -c TRANSLATORS: --project=WorkerVoice --copyright-holder=WorkerVoice -o gateway/locale/service.pot .
	$(BIN)/pybabel update -D flows -i locales/messages-flows.pot -d locales
	$(BIN)/pybabel update -D reports -i locales/messages-reports.pot -d locales
	$(BIN)/pybabel update -D service -i gateway/locale/service.pot -d gateway/locale
