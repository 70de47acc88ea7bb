# edgekd — the README's two commands:
#   make distill export    train teacher + KD student + baseline on the embedded default, export the bundle
#   make test              the test suite
# and, after export, `make bench`: latency/accuracy/size/memory of every model in the bundle.
# Both create the virtual environment (.venv) on first use. Override CONFIG/RUN to use another recipe:
#   make distill export CONFIG=configs/cifar10-cpu.yaml RUN=runs/cifar10-cpu

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgekd-installed
CONFIG ?= configs/digits.yaml
RUN    ?= runs/$(basename $(notdir $(CONFIG)))
BUNDLE ?= artifacts/$(notdir $(RUN))
PYTEST_ARGS ?=
BUDGET ?= flash_kb=64,device=cortex-m4-120mhz

.PHONY: help venv distill export bench search test test-slow lint test-arm test-mcu mcu-tools arm64-emu mcu-estimate mcu-emulate clean

help:
	@echo "make distill export   train on $(CONFIG) into $(RUN), then export the bundle to $(BUNDLE)"
	@echo "make bench            benchmark every model in $(BUNDLE) on this CPU; report in $(BUNDLE)/bench/cpu"
	@echo "make search           the most accurate student of $(CONFIG) inside BUDGET=$(BUDGET), in $(RUN)-search"
	@echo "make test             run the fast test suite"
	@echo "make test-slow        run the slow tests (real CIFAR-10 data)"
	@echo "make lint             ruff: lint and format check (settings in pyproject.toml)"
	@echo "make test-arm         run the Pi code path on emulated ARM64 (qemu-user; sets up .cache/arm64-emu)"
	@echo "make mcu-estimate     MCU latency estimates vs the published MLPerf Tiny ResNet-8 figures"
	@echo "make test-mcu         build the MCU app (TFLM + CMSIS-NN) for digits, run it on QEMU Cortex-M4 and M7"
	@echo "make mcu-emulate      ResNet-8 on QEMU Cortex-M4/M7: flash/RAM, instructions per op, estimates vs published"
	@echo "make venv             create $(VENV) and install edgekd with every extra"
	@echo "make clean            remove runs/, artifacts/ and the virtual environment"

# The environment is rebuilt when the dependency list or the pins change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[all]'
	@touch $@

venv: $(STAMP)

distill: $(STAMP)
	$(BIN)/edgekd distill --config $(CONFIG) --out $(RUN) --overwrite

export: $(STAMP)
	$(BIN)/edgekd export --run $(RUN) --out $(BUNDLE)

bench: $(STAMP)
	$(BIN)/edgekd bench --artifacts $(BUNDLE)

search: $(STAMP)
	$(BIN)/edgekd search --config $(CONFIG) --budget $(BUDGET) --out $(RUN)-search

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q --runslow -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# qemu-user-static, an arm64 Python 3.11 from Debian packages and the aarch64 wheels, cached in
# .cache/arm64-emu (idempotent; needs root for apt-get the first time)
arm64-emu: $(STAMP)
	HOST_PYTHON=$(BIN)/python bash deploy/arm64-emu/setup.sh

test-arm: arm64-emu
	$(BIN)/python -m pytest -q -s --runarm -m arm $(PYTEST_ARGS)

mcu-estimate: $(STAMP)
	$(BIN)/python benchmarks/mcu_estimate.py

# The Arm bare-metal toolchain and QEMU from Debian packages (needs root; idempotent)
mcu-tools:
	@command -v arm-none-eabi-g++ >/dev/null && command -v qemu-system-arm >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm; }

# The first run compiles TFLite Micro + CMSIS-NN per core (cached in ~/.cache/edgekd/mcu); later runs take seconds
test-mcu: $(STAMP) mcu-tools
	$(BIN)/python -m pytest -q --runslow tests/test_mcu_emulate.py $(PYTEST_ARGS)

mcu-emulate: $(STAMP) mcu-tools
	$(BIN)/python benchmarks/mcu_emulate.py

clean:
	rm -rf runs artifacts $(VENV)
