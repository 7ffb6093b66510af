#!/usr/bin/env nextflow
/*
 * pertprobe: benchmark transcriptomics foundation models against simple, strong baselines for
 * perturbation analysis. See README.md and docs/.
 */
nextflow.enable.dsl = 2

include { VALIDATE_INPUT } from './modules/local/validate_input/main'
include { PREPROCESS     } from './modules/local/preprocess/main'
include { EMBED_CELLS    } from './modules/local/embed_cells/main'
include { PREDICT        } from './modules/local/predict/main'
include { EVALUATE       } from './modules/local/evaluate/main'
include { REPORT         } from './modules/local/report/main'

def requiredColumns() { ['dataset', 'h5ad', 'perturbation_type', 'gene_id_type'] }
def optionalColumns() { ['perturbation_col', 'control_label', 'batch_col', 'counts_layer', 'gene_symbol_col'] }

/*
 * One samplesheet row -> [meta, h5ad]. Relative h5ad paths are resolved against the samplesheet's
 * folder. meta.dataset_args carries the row's columns as command-line options for the bin/ scripts.
 */
def samplesheetRow(Map row, int line, samplesheet) {
    def where = "${samplesheet} line ${line}"
    def perturbationTypes = ['CRISPRi', 'CRISPRa', 'KO', 'drug']
    def geneIdTypes = ['symbol', 'ensembl']
    def missing = requiredColumns().findAll { !row[it]?.trim() }
    if (missing) {
        error("${where}: field(s) ${missing.join(', ')} empty or missing. Fix: fill them in " +
              "(columns: ${(requiredColumns() + optionalColumns()).join(',')})")
    }
    if (!(row.dataset ==~ /[A-Za-z0-9._-]+/)) {
        error("${where}: field 'dataset' = '${row.dataset}' has characters other than letters, digits, '.', '_', '-'. Fix: rename it")
    }
    if (!(row.perturbation_type in perturbationTypes)) {
        error("${where}: field 'perturbation_type' = '${row.perturbation_type}'. Fix: use one of ${perturbationTypes.join(', ')}")
    }
    if (!(row.gene_id_type in geneIdTypes)) {
        error("${where}: field 'gene_id_type' = '${row.gene_id_type}'. Fix: use one of ${geneIdTypes.join(', ')}")
    }
    def h5ad = (row.h5ad ==~ /^(\/|[a-z0-9]+:\/\/).*/) ? file(row.h5ad) : file(samplesheet).parent.resolve(row.h5ad)
    if (!h5ad.exists()) {
        error("${where}: field 'h5ad' = '${row.h5ad}': file ${h5ad} not found. Fix: give a path relative to the samplesheet or absolute")
    }
    def meta = [
        id               : row.dataset,
        perturbation_type: row.perturbation_type,
        gene_id_type     : row.gene_id_type,
        perturbation_col : row.perturbation_col ?: 'perturbation',
        control_label    : row.control_label ?: 'control',
        batch_col        : row.batch_col ?: '',
        counts_layer     : row.counts_layer ?: '',
        gene_symbol_col  : row.gene_symbol_col ?: '',
    ]
    def options = ['perturbation_col', 'control_label', 'batch_col', 'counts_layer', 'perturbation_type',
                   'gene_id_type', 'gene_symbol_col']
    meta.dataset_args = options.findAll { meta[it] }
        .collect { "--${it.replace('_', '-')} '${meta[it].replace("'", "'\\''")}'" }
        .join(' ')
    return [meta, h5ad]
}

def csvList(value) {
    return value.toString().tokenize(',')*.trim().findAll { it }
}

workflow {
    if (!params.input) {
        error("--input is required: a samplesheet CSV with columns ${(requiredColumns() + optionalColumns()).join(',')} " +
              "(see docs/usage.md), or run with -profile test")
    }
    def samplesheet = file(params.input, checkIfExists: true)
    def rows = samplesheet.splitCsv(header: true)
    if (!rows) {
        error("${samplesheet}: no datasets. Fix: add one row per dataset")
    }
    def ids = rows*.dataset
    def dups = ids.findAll { id -> ids.count(id) > 1 }.unique()
    if (dups) {
        error("${samplesheet}: field 'dataset' repeats ${dups.join(', ')}. Fix: give each dataset a unique id")
    }
    ch_datasets = Channel.fromList(rows.withIndex().collect { row, i -> samplesheetRow(row, i + 2, samplesheet) })

    VALIDATE_INPUT(ch_datasets)
    PREPROCESS(ch_datasets.join(VALIDATE_INPUT.out.json))

    ch_embed = PREPROCESS.out.h5ad.combine(Channel.fromList(csvList(params.cell_embedders)))
    EMBED_CELLS(ch_embed)

    // One PREDICT task per dataset x (seed, fold) x predictor, read from the splits PREPROCESS wrote.
    ch_split_ids = PREPROCESS.out.splits.flatMap { meta, splits ->
        splits.splitCsv(header: true).collect { [meta.id, it.seed as int, it.fold as int] }.unique()
    }
    ch_predict = PREPROCESS.out.pseudobulk
        .join(PREPROCESS.out.splits)
        .map { meta, pb, splits -> [meta.id, meta, pb, splits] }
        .combine(ch_split_ids, by: 0)
        .map { id, meta, pb, splits, seed, fold -> [meta, pb, splits, seed, fold] }
        .combine(Channel.fromList(csvList(params.predictors)))
    PREDICT(ch_predict)

    ch_evaluate = PREDICT.out.prediction
        .map { meta, pred -> [meta.id, meta, pred] }
        .combine(PREPROCESS.out.pseudobulk.map { meta, pb -> [meta.id, pb] }, by: 0)
        .map { id, meta, pred, pb -> [meta, pred, pb] }
    EVALUATE(ch_evaluate)

    ch_versions = VALIDATE_INPUT.out.versions
        .mix(PREPROCESS.out.versions, EMBED_CELLS.out.versions, PREDICT.out.versions, EVALUATE.out.versions)
        .map { it.text }
        .unique()
        .collectFile(name: 'collated_versions.yml', sort: true, newLine: false)

    REPORT(
        EVALUATE.out.metrics.map { it[1] }.collect(sort: { a, b -> a.name <=> b.name }),
        PREPROCESS.out.summary.map { it[1] }.collect(sort: { a, b -> a.name <=> b.name }),
        EMBED_CELLS.out.embedding.map { it[2] }.collect(sort: { a, b -> a.name <=> b.name }),
        ch_versions,
    )
}

workflow.onComplete {
    if (workflow.success) {
        log.info "pertprobe finished: leaderboard ${params.outdir}/leaderboard.csv, report ${params.outdir}/report.html"
    } else {
        log.error "pertprobe failed: see the error above and ${workflow.launchDir}/.nextflow.log"
    }
}
