# DA6401 course repository. Two commands (see README):
#   make grade-samples   set up, fetch data, build releases, autograde the sample submissions, feedback, score table
#   make test            set up, then run the grader_tests suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ASSIGNMENTS := $(sort $(notdir $(patsubst %/,%,$(dir $(wildcard source/*/*.ipynb)))))
# The sample submissions `make grade-samples` grades, per assignment (all of them: grader_tests).
GRADED := a1_mlp a2_cnn a3_seq2seq a4_generative
SAMPLES_a1_mlp ?= reference untouched alternative_loops noisy_but_correct adam_no_bias_correction relu_grad_mask_inverted linear_classifier_only
SAMPLES_a2_cnn ?= reference untouched alternative_architecture no_zero_grad missing_checkpoint linear_classifier_baseline
SAMPLES_a3_seq2seq ?= reference untouched alternative_lstm_luong attention_ignores_mask decoder_never_stops vocab_mismatch_checkpoint no_attention_baseline
# A4: each sample submits one of the two notebooks (dcgan_* or vit_*).
SAMPLES_a4_generative ?= dcgan_reference dcgan_untouched dcgan_alternative dcgan_mode_collapse_single_digit dcgan_generator_loss_saturating \
	vit_reference vit_untouched vit_alternative vit_no_position_embedding vit_attention_no_scaling

# Use the offline mirror beside the checkout when there is one (CI, course servers).
ifneq ($(wildcard ../shared/data/SHA256SUMS),)
export DA6401_DATA_MIRROR ?= $(abspath ../shared/data)
endif
# nbgrader runs `alembic` from PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup data release grade-samples test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

data: setup
	$(BIN)/python -m da6401.data fetch mnist cifar10 multi30k

release: setup
	$(foreach a,$(ASSIGNMENTS),$(BIN)/nbgrader generate_assignment $(a) --force --log-level=WARN &&) true

grade-samples: data release
	@# da6401.grade: every core, a progress bar and a summary (exit status 1 would mean a sample could not be graded)
	$(foreach a,$(GRADED),\
	  $(BIN)/python -m da6401.submissions assemble $(a) $(SAMPLES_$(a)) && \
	  $(BIN)/python -m da6401.grade autograde $(a) --force && \
	  $(BIN)/nbgrader generate_feedback $(a) --force --log-level=ERROR &&) true
	$(foreach a,$(GRADED),echo "== $(a)" && $(BIN)/python -m da6401.scores $(a) &&) true

test: setup
	$(BIN)/python -m pytest grader_tests $(PYTEST_ARGS)
