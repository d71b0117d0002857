"""A study's life: its plan from a request, each trial, resumption, stopping, warm
starts, crash repair, trial time-outs and the encoder a head study builds on."""
