#!/usr/bin/env nextflow
/*
 * pertprobe: benchmark transcriptomics foundation models against simple, strong baselines for
 * perturbation analysis. See README.md and docs/.
 */
nextflow.enable.dsl = 2

include { VALIDATE_INPUT } from './modules/local/validate_input/main'
include { PREPROCESS     } from './modules/local/preprocess/main'
include { EMBED_CELLS    } from './modules/local/embed_cells/main'
include { EMBED_CELLS_GPU } from './modules/local/embed_cells/main'
include { EMBED_CELLS_MODEL } from './modules/local/embed_cells_model/main'
include { EXTRACT_GENE_EMBEDDINGS } from './modules/local/extract_gene_embeddings/main'
include { EVAL_CELL_EMBEDDINGS } from './modules/local/eval_cell_embeddings/main'
include { EMBED_GENES    } from './modules/local/embed_genes/main'
include { PREDICT        } from './modules/local/predict/main'
include { PREDICT_GPU    } from './modules/local/predict/main'
include { CEILING        } from './modules/local/ceiling/main'
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
    if (!(row.dataset ==~ /[A-Za-z0-9_-]+/)) {
        error("${where}: field 'dataset' = '${row.dataset}' has characters other than letters, digits, '_', '-'. Fix: rename it")
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

/*
 * Checkpoint directory of each requested foundation model (a `path` input: staged on any executor,
 * part of the resume hash). Weights are never downloaded: a missing --<model>_model is an error.
 */
def checkpoints(List models, String what) {
    return models.collect { model ->
        def dir = params["${model}_model"]
        if (!dir || dir instanceof Boolean) {  // `--x_model` given without a value arrives as true
            error("${what} '${model}' needs --${model}_model: a local or object-store directory with the model's " +
                  "released files (see docs/models/${model}.md). Fix: pass it, or remove '${model}'")
        }
        [model, file(dir, checkIfExists: true)]
    }
}

def optionalFile(value) {
    return (value && !(value instanceof Boolean)) ? file(value, checkIfExists: true) : []
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

    // Cell embeddings; the random embedding is always added as the floor of every cell task.
    def baselineEmbedders = ['pca', 'scvi', 'random']
    def cellModels        = ['cellplm', 'geneformer', 'scgpt', 'uce']
    def geneModels        = ['esm2', 'genept', 'geneformer', 'scgpt']
    def cellEmbedders = (csvList(params.cell_embedders) + ['random']).unique()
    def unknownEmbedders = cellEmbedders.findAll { !(it in baselineEmbedders + cellModels) }
    if (unknownEmbedders) {
        error("--cell_embedders: unknown ${unknownEmbedders.join(', ')}. Fix: choose from ${(baselineEmbedders + cellModels).join(', ')}")
    }
    def unknownGeneModels = csvList(params.gene_models).findAll { !(it in geneModels) }
    if (unknownGeneModels) {
        error("--gene_models: unknown ${unknownGeneModels.join(', ')}. Fix: choose from ${geneModels.join(', ')}")
    }
    def cellCheckpoints = checkpoints(cellEmbedders.findAll { it in cellModels }, '--cell_embedders')
    def geneCheckpoints = checkpoints(csvList(params.gene_models).unique(), '--gene_models')
    def sideInputs = [esm2: [params.protein_fasta, '--protein_fasta'], genept: [params.gene_descriptions, '--gene_descriptions']]
    def geneInputs = geneCheckpoints.collect { model, dir ->
        def side = sideInputs[model]
        if (side && (!side[0] || side[0] instanceof Boolean)) {
            error("--gene_models '${model}' needs ${side[1]} (see docs/models/${model}.md). Fix: pass it, or remove '${model}'")
        }
        [model, dir, side ? file(side[0], checkIfExists: true) : []]
    }
    def geneIdMap = optionalFile(params.gene_id_map)

    ch_embed = PREPROCESS.out.h5ad.combine(Channel.fromList(cellEmbedders.findAll { it in baselineEmbedders }))
        .branch { gpu: params.gpu && it[2] == 'scvi'
                  cpu: true }
    EMBED_CELLS(ch_embed.cpu)
    EMBED_CELLS_GPU(ch_embed.gpu)
    // Foundation models read the raw counts of every input gene (the samplesheet's h5ad) for the processed cells.
    ch_model_inputs = PREPROCESS.out.h5ad.join(ch_datasets)
    EMBED_CELLS_MODEL(ch_model_inputs.combine(Channel.fromList(cellCheckpoints)), geneIdMap)
    EXTRACT_GENE_EMBEDDINGS(ch_model_inputs.combine(Channel.fromList(geneInputs)), geneIdMap)
    ch_cell_embeddings = EMBED_CELLS.out.embedding.mix(EMBED_CELLS_GPU.out.embedding, EMBED_CELLS_MODEL.out.embedding)

    // Per dataset: [id, meta, processed h5ad, pseudobulk, pseudobulk by batch, DE, splits]
    ch_pre = PREPROCESS.out.h5ad
        .join(PREPROCESS.out.pseudobulk)
        .join(PREPROCESS.out.pseudobulk_by_batch)
        .join(PREPROCESS.out.de)
        .join(PREPROCESS.out.splits)
        .map { meta, h5ad, pb, by_batch, de, splits -> [meta.id, meta, h5ad, pb, by_batch, de, splits] }

    // One entry per dataset x (seed, fold), read from the splits PREPROCESS wrote.
    ch_split = ch_pre.flatMap { id, meta, h5ad, pb, by_batch, de, splits ->
        splits.splitCsv(header: true).collect { [it.seed as int, it.fold as int] }.unique()
            .collect { seed, fold -> [id, meta, h5ad, pb, by_batch, de, splits, seed, fold] }
    }

    // Gene embeddings per split: data-derived PCA fitted on that split's training perturbations,
    // seeded random, external tables (--gene_embedding_tables) and each dataset's foundation-model
    // tables (--gene_models).
    ch_sources = Channel.fromList(csvList(params.gene_embeddings).collect { [it, []] })
        .mix(Channel.fromList(csvList(params.gene_embedding_tables).collect { p ->
            def f = file(p, checkIfExists: true)
            [f.name.tokenize('.')[0], f]
        }))
    ch_dataset_sources = ch_pre.map { it[0] }.combine(ch_sources)
        .mix(EXTRACT_GENE_EMBEDDINGS.out.table.map { meta, model, table -> [meta.id, model, table] })
    EMBED_GENES(
        ch_split.map { id, meta, h5ad, pb, by_batch, de, splits, seed, fold -> [id, meta, pb, splits, seed, fold] }
            .combine(ch_dataset_sources, by: 0)
            .map { id, meta, pb, splits, seed, fold, source, table -> [meta, pb, splits, seed, fold, source, table] }
    )

    def predictors      = csvList(params.predictors)
    def embeddingModels = ['linear', 'knn', 'ridge', 'latent_additive', 'decoder_only']
    def torchModels     = ['latent_additive', 'decoder_only']
    def unknown = predictors.findAll { !(it in ['no_change', 'mean', 'mean_of_means', 'crispr_informed_mean', 'additive'] + embeddingModels) }
    if (unknown) {
        error("--predictors: unknown ${unknown.join(', ')}. Fix: choose from no_change, mean, mean_of_means, crispr_informed_mean, additive, ${embeddingModels.join(', ')}")
    }
    ch_baseline = ch_split
        .combine(Channel.fromList(predictors.findAll { !(it in embeddingModels) }))
        .map { id, meta, h5ad, pb, by_batch, de, splits, seed, fold, predictor ->
            [meta, pb, by_batch, splits, seed, fold, predictor, []] }
    ch_with_embedding = ch_split
        .map { id, meta, h5ad, pb, by_batch, de, splits, seed, fold -> [[id, seed, fold], meta, pb, by_batch, splits] }
        .combine(EMBED_GENES.out.embedding.map { meta, seed, fold, source, emb -> [[meta.id, seed, fold], emb] }, by: 0)
        .combine(Channel.fromList(predictors.findAll { it in embeddingModels }))
        .map { key, meta, pb, by_batch, splits, emb, predictor -> [meta, pb, by_batch, splits, key[1], key[2], predictor, emb] }
    ch_predict = ch_baseline.mix(ch_with_embedding)
        .branch { gpu: params.gpu && it[6] in torchModels
                  cpu: true }
    PREDICT(ch_predict.cpu)
    PREDICT_GPU(ch_predict.gpu)

    ch_dataset_files = ch_pre.map { id, meta, h5ad, pb, by_batch, de, splits -> [id, pb, de] }
    ch_evaluate = PREDICT.out.prediction.mix(PREDICT_GPU.out.prediction)
        .map { meta, pred -> [meta.id, meta, pred] }
        .combine(ch_dataset_files, by: 0)
        .map { id, meta, pred, pb, de -> [meta, pred, pb, de] }
    EVALUATE(ch_evaluate)

    CEILING(
        ch_split.map { id, meta, h5ad, pb, by_batch, de, splits, seed, fold -> [meta, h5ad, pb, de, splits, seed, fold] }
    )

    ch_relationships = params.known_relationships ? file(params.known_relationships, checkIfExists: true) : []
    EVAL_CELL_EMBEDDINGS(
        ch_cell_embeddings.map { meta, model, emb -> [meta.id, meta, model, emb] }
            .combine(ch_pre.map { id, meta, h5ad, pb, by_batch, de, splits -> [id, h5ad, splits] }, by: 0)
            .map { id, meta, model, emb, h5ad, splits -> [meta, model, emb, h5ad, splits] },
        ch_relationships,
    )

    ch_versions = VALIDATE_INPUT.out.versions
        .mix(PREPROCESS.out.versions, EMBED_CELLS.out.versions, EMBED_CELLS_GPU.out.versions,
             EMBED_CELLS_MODEL.out.versions, EXTRACT_GENE_EMBEDDINGS.out.versions,
             EMBED_GENES.out.versions, PREDICT.out.versions, PREDICT_GPU.out.versions, EVALUATE.out.versions,
             CEILING.out.versions, EVAL_CELL_EMBEDDINGS.out.versions)
        .map { it.text }
        .unique()
        .collectFile(name: 'collated_versions.yml', sort: true, newLine: false)

    REPORT(
        EVALUATE.out.metrics.mix(CEILING.out.metrics).map { it[1] }.collect(sort: { a, b -> a.name <=> b.name }),
        PREPROCESS.out.summary.map { it[1] }.collect(sort: { a, b -> a.name <=> b.name }),
        ch_cell_embeddings.map { it[2] }.collect(sort: { a, b -> a.name <=> b.name }),
        EXTRACT_GENE_EMBEDDINGS.out.table.map { it[2] }.collect(sort: { a, b -> a.name <=> b.name }).ifEmpty([]),
        EVAL_CELL_EMBEDDINGS.out.metrics.map { it[1] }.collect(sort: { a, b -> a.name <=> b.name }),
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
