/*
 * Pipeline initialisation (parameter checks, the samplesheet as [meta, h5ad]) and completion, plus
 * the small helpers the subworkflows share.
 */
include { VALIDATE_SAMPLESHEET } from '../../../modules/local/validate_samplesheet/main'

// Names accepted by --cell_embedders, --gene_models and --predictors.
def baselineEmbedders() { ['pca', 'scvi', 'random'] }
def cellModels()        { ['cellplm', 'geneformer', 'scgpt', 'uce'] }
def geneModels()        { ['esm2', 'genept', 'geneformer', 'scgpt'] }
def floorPredictors()   { ['no_change', 'mean', 'mean_of_means', 'crispr_informed_mean', 'additive'] }
def embeddingPredictors() { ['linear', 'knn', 'ridge', 'latent_additive', 'decoder_only'] }
def torchPredictors()   { ['latent_additive', 'decoder_only'] }

def csvList(value) {
    return value.toString().tokenize(',')*.trim().findAll { it }.unique()
}

// The cell embedders of the run; the random embedding is always added as the floor of every cell task.
def cellEmbedders() {
    return (csvList(params.cell_embedders) + ['random']).unique()
}

def optionalFile(value) {
    return (value && !(value instanceof Boolean)) ? file(value, checkIfExists: true) : []
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

// Foundation-model gene tables: [model, checkpoint, side input or []]; side inputs are checked here.
def geneModelInputs() {
    def sideInputs = [esm2: [params.protein_fasta, '--protein_fasta'], genept: [params.gene_descriptions, '--gene_descriptions']]
    return checkpoints(csvList(params.gene_models), '--gene_models').collect { model, dir ->
        def side = sideInputs[model]
        if (side && (!side[0] || side[0] instanceof Boolean)) {
            error("--gene_models '${model}' needs ${side[1]} (see docs/models/${model}.md). Fix: pass it, or remove '${model}'")
        }
        [model, dir, side ? file(side[0], checkIfExists: true) : []]
    }
}

def checkChoices(String option, List given, List allowed) {
    def unknown = given.findAll { !(it in allowed) }
    if (unknown) {
        error("${option}: unknown ${unknown.join(', ')}. Fix: choose from ${allowed.join(', ')}")
    }
}

workflow PIPELINE_INITIALISATION {
    take:
    input  // path of the samplesheet CSV (params.input)

    main:
    if (!input) {
        error("--input is required: a samplesheet CSV described by assets/schema_input.json (see docs/usage.md), " +
              "or run with -profile test")
    }
    checkChoices('--cell_embedders', cellEmbedders(), baselineEmbedders() + cellModels())
    checkChoices('--gene_models', csvList(params.gene_models), geneModels())
    checkChoices('--predictors', csvList(params.predictors), floorPredictors() + embeddingPredictors())
    checkpoints(cellEmbedders().findAll { it in cellModels() }, '--cell_embedders')
    geneModelInputs()

    VALIDATE_SAMPLESHEET(file(input, checkIfExists: true), file("${projectDir}/assets/schema_input.json"), input)
    ch_datasets = VALIDATE_SAMPLESHEET.out.json
        .splitJson()
        .map { row -> [row.meta, file(row.h5ad, checkIfExists: true)] }

    emit:
    datasets = ch_datasets  // [meta, h5ad]
    versions = VALIDATE_SAMPLESHEET.out.versions
}

def completionSummary() {
    if (workflow.success) {
        log.info "pertprobe finished: leaderboard ${params.outdir}/leaderboard.csv, report ${params.outdir}/report.html"
    } else {
        log.error "pertprobe failed: see the error above and ${workflow.launchDir}/.nextflow.log"
    }
}

workflow PIPELINE_COMPLETION {
    main:
    workflow.onComplete {
        completionSummary()
    }
}
