/*
 * Pipeline initialisation (parameter checks, the samplesheet as [meta, h5ad]) and completion, plus
 * the small helpers the subworkflows share.
 */
include { VALIDATE_SAMPLESHEET } from '../../../modules/local/validate_samplesheet/main'
include { VALIDATE_SIDE_INPUTS } from '../../../modules/local/validate_side_inputs/main'
include { APPLY_LABEL_MAP      } from '../../../modules/local/apply_label_map/main'

/*
 * The registry (assets/registry.json, written by bin/registry.py from the Python implementations
 * and checked against them by a test) is the only list of names: every choice below comes from it.
 */
@groovy.transform.Memoized  // read once per run: channel closures look entries up per item
def registry() {
    return new groovy.json.JsonSlurper().parseText(file("${projectDir}/assets/registry.json").text)
}

// Names of registered `kind` entries whose fields match `where` (registration order).
def registryNames(String kind, Map where = [:]) {
    return registry().entries[kind].values()
        .findAll { entry -> where.every { key, value -> entry[key] == value } }
        .collect { it.name }
}

def registryEntry(String kind, String name) {
    return registry().entries[kind][name]
}

/*
 * The names chosen by a comma-separated parameter, where a profile name (minimal, paper, full)
 * stands for its members; an unknown name stops the run before any task with the choices.
 */
def selectNames(String option, String kind, value, Map where = [:]) {
    def allowed = registryNames(kind, where)
    def profiles = registry().profiles
    def chosen = []
    csvList(value).each { item ->
        if (item in profiles) {
            chosen += registry().entries[kind].values()
                .findAll { entry -> item in entry.profiles && entry.name in allowed }.collect { it.name }
        } else if (item in allowed) {
            chosen << item
        } else {
            error("${option}: unknown ${item}. Fix: choose from ${allowed.join(', ')} or a profile (${profiles.join(', ')}); " +
                  "see docs/registry.md")
        }
    }
    return chosen.unique()
}

def csvList(value) {
    return value.toString().tokenize(',')*.trim().findAll { it }.unique()
}

// The cell embedders of the run; the registered floor (random) is always added to every cell task.
def cellEmbedders() {
    return (selectNames('--cell_embedders', 'cell_embedder', params.cell_embedders) +
            registryNames('cell_embedder', [floor: true])).unique()
}

def predictors() {
    return selectNames('--predictors', 'predictor', params.predictors)
}

// Predictors trained on cells from a foundation model's checkpoint (registry: needs 'cells').
def finetunePredictors() {
    return predictors().findAll { 'cells' in registryEntry('predictor', it).needs }
}

def finetuneVariants() {
    return selectNames('--finetune_variants', 'finetune_variant', params.finetune_variants)
}

def geneModels() {
    return selectNames('--gene_models', 'gene_embedding', params.gene_models, [checkpoint: true])
}

def builtinGeneEmbeddings() {
    return selectNames('--gene_embeddings', 'gene_embedding', params.gene_embeddings, [checkpoint: false])
}

// Whether a registered predictor or perturbation embedding is defined for the dataset's perturbation type.
def appliesTo(String kind, String name, Map meta) {
    def types = registryEntry(kind, name).perturbation_types
    return !types || meta.perturbation_type in types
}

// Whether a registered entry runs as the *_GPU alias of its process (only with --gpu).
def onGpu(String kind, String name) {
    return params.gpu && registryEntry(kind, name).gpu
}

def optionalFile(value) {
    return (value && !(value instanceof Boolean)) ? file(value, checkIfExists: true) : []
}

/*
 * Checkpoint directory of each requested foundation model (a `path` input: staged on any executor,
 * part of the resume hash). Weights are never downloaded: a missing --<model>_model, or a directory
 * without the files the registry lists for the model (checkpoint_files), is an error before any task.
 */
def checkpoints(List models, String what, String kind) {
    return models.collect { name ->
        def model = registryEntry(kind, name).model ?: name  // a fine-tuned predictor reads its model's checkpoint
        def dir = params["${model}_model"]
        if (!dir || dir instanceof Boolean) {  // `--x_model` given without a value arrives as true
            error("${what} '${name}' needs --${model}_model: a local or object-store directory with the model's " +
                  "released files (see docs/models/${model}.md). Fix: pass it, or remove '${name}'")
        }
        def directory = file(dir, checkIfExists: true)
        def missing = registryEntry(kind, name).checkpoint_files.findAll { pattern ->
            !pattern.tokenize('|').any { alt -> files("${directory}/${alt}").any { it.exists() } }
        }
        if (missing) {
            error("--${model}_model ${dir}: no ${missing.join(', ')} in the directory, so it is not a released ${model} " +
                  "checkpoint. Fix: point --${model}_model at the folder holding the model's released files " +
                  "(docs/models/${model}.md)")
        }
        [name, directory]
    }
}

// Foundation-model gene tables: [model, checkpoint, side input or []]; side inputs (registry field
// side_input, a parameter name) are checked here.
def geneModelInputs() {
    return checkpoints(geneModels(), '--gene_models', 'gene_embedding').collect { model, dir ->
        def side = registryEntry('gene_embedding', model).side_input
        def value = side ? params[side] : null
        if (side && (!value || value instanceof Boolean)) {
            error("--gene_models '${model}' needs --${side} (see docs/models/${model}.md). Fix: pass it, or remove '${model}'")
        }
        [model, dir, side ? file(value, checkIfExists: true) : []]
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
    // Every choice is checked against the registry before any task runs.
    predictors()
    builtinGeneEmbeddings()
    selectNames('--metrics', 'metric', params.metrics)
    selectNames('--cell_alignments', 'alignment', params.cell_alignments)
    selectNames('--cell_tasks', 'cell_task', params.cell_tasks)
    checkpoints(cellEmbedders().findAll { registryEntry('cell_embedder', it).checkpoint }, '--cell_embedders', 'cell_embedder')
    checkpoints(finetunePredictors(), '--predictors', 'predictor')
    finetuneVariants()
    def sides = geneModelInputs().findAll { it[2] }

    VALIDATE_SAMPLESHEET(file(input, checkIfExists: true), file("${projectDir}/assets/schema_input.json"), input)
    // Side inputs are read by their steps' own code now, so a bad one stops the run before any work.
    VALIDATE_SIDE_INPUTS(
        optionalFile(params.known_relationships),
        csvList(params.gene_embedding_tables).collect { file(it, checkIfExists: true) },
        optionalFile(params.gene_id_map),
        sides.collect { it[0] },
        sides.collect { it[2] },
    )
    // A drug dataset needs its compound table when a chosen perturbation embedding reads one.
    def molecular = builtinGeneEmbeddings().findAll { 'compound_table' in registryEntry('gene_embedding', it).needs }
    ch_samples = VALIDATE_SAMPLESHEET.out.json
        .splitJson()
        .map { row ->
            if (row.meta.perturbation_type == 'drug' && !row.compound_table && molecular) {
                error("dataset ${row.meta.id}: a drug dataset needs the samplesheet's compound_table (CSV compound,smiles) " +
                      "for --gene_embeddings ${molecular.join(',')}. Fix: add it, or leave those embeddings out")
            }
            row
        }
    ch_rows = ch_samples
        .combine(VALIDATE_SIDE_INPUTS.out.json)
        .branch { row, sideInputs ->
            relabel: row.label_map
            as_is: true
        }
    // Rows with a label_map (guide -> target) are relabelled once; every later step reads that copy.
    APPLY_LABEL_MAP(ch_rows.relabel.map { row, sideInputs ->
        [row.meta, file(row.h5ad, checkIfExists: true), file(row.label_map, checkIfExists: true)] })
    ch_datasets = ch_rows.as_is.map { row, sideInputs -> [row.meta, file(row.h5ad, checkIfExists: true)] }
        .mix(APPLY_LABEL_MAP.out.h5ad)

    emit:
    datasets  = ch_datasets  // [meta, h5ad]
    compounds = ch_samples.filter { it.compound_table }.map { [it.meta, file(it.compound_table, checkIfExists: true)] }  // [meta, compound table]
    versions = VALIDATE_SAMPLESHEET.out.versions.mix(VALIDATE_SIDE_INPUTS.out.versions, APPLY_LABEL_MAP.out.versions)
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
