"""Host post-processing: model outputs to MLPerf response bytes."""
