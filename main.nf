#!/usr/bin/env nextflow
/*
 * pertprobe: benchmark transcriptomics foundation models against simple, strong baselines for
 * perturbation analysis. See README.md, docs/architecture.md and docs/usage.md.
 */
nextflow.enable.dsl = 2

include { PERTPROBE                                         } from './workflows/pertprobe'
include { PIPELINE_INITIALISATION; PIPELINE_COMPLETION      } from './subworkflows/local/utils_pertprobe_pipeline/main'

workflow {
    PIPELINE_INITIALISATION(params.input)
    PERTPROBE(PIPELINE_INITIALISATION.out.datasets, PIPELINE_INITIALISATION.out.compounds, PIPELINE_INITIALISATION.out.versions)
    PIPELINE_COMPLETION()
}
