/*
 * Response prediction for unseen perturbations: gene (perturbation) embeddings per split, every
 * predictor per split, one EVALUATE per split over all its predictions, and the noise ceiling with the split-half duplicate.
 */
include { EXTRACT_GENE_EMBEDDINGS } from '../../../modules/local/extract_gene_embeddings/main'
include { EMBED_GENES             } from '../../../modules/local/embed_genes/main'
include { PREDICT                 } from '../../../modules/local/predict/main'
include { PREDICT as PREDICT_GPU  } from '../../../modules/local/predict/main'
include { EVALUATE                } from '../../../modules/local/evaluate/main'
include { CEILING                 } from '../../../modules/local/ceiling/main'
include { PREDICT_FINETUNE        } from '../../../modules/local/predict_finetune/main'
include { appliesTo; builtinGeneEmbeddings; checkpoints; csvList; finetunePredictors; finetuneVariants; geneModelInputs; onGpu; optionalFile; predictors; registryEntry } from '../utils_pertprobe_pipeline/main'

workflow RESPONSE_BENCHMARK {
    take:
    ch_datasets  // [meta, input h5ad]
    ch_processed // [meta, processed h5ad, pseudobulk, pseudobulk by batch, DE, splits]
    ch_splits    // [meta, processed h5ad, pseudobulk, pseudobulk by batch, DE, splits, split ([task, seed, fold])]
    ch_compounds // [meta, compound table] (drug datasets)

    main:
    def geneInputs = geneModelInputs()
    EXTRACT_GENE_EMBEDDINGS(
        ch_processed.map { it[0..1] }.join(ch_datasets).combine(Channel.fromList(geneInputs))
            .filter { meta, h5ad, counts, model, dir, side -> appliesTo('gene_embedding', model, meta) },
        optionalFile(params.gene_id_map),
    )

    // Perturbation embeddings per split: data-derived PCA fitted on that split's training perturbations,
    // seeded random, molecule fingerprints and descriptors (drugs), external tables (--gene_embedding_tables)
    // and the foundation-model tables; each built-in only for the perturbation types it is defined for.
    def tables = csvList(params.gene_embedding_tables).collect { p ->
        def f = file(p, checkIfExists: true)
        [f.name.tokenize('.')[0], f]
    }
    def builtins = builtinGeneEmbeddings()
    ch_sources = ch_processed.map { it[0] }
        .combine(Channel.fromList(builtins.collect { [it, []] } + tables))
        .filter { meta, source, table -> table || appliesTo('gene_embedding', source, meta) }
        .mix(EXTRACT_GENE_EMBEDDINGS.out.table)
    ch_compound_files = ch_processed.map { it[0..1] }.join(ch_compounds, remainder: true)
        .map { meta, h5ad, table -> [meta, table ?: []] }
    EMBED_GENES(
        ch_splits.map { meta, h5ad, pb, by_batch, de, splits, split -> [meta, pb, splits, split] }
            .combine(ch_sources, by: 0)
            .combine(ch_compound_files, by: 0)
    )

    // One PREDICT task per split x gene embedding (or none) x device, running every predictor of that group.
    def finetune = finetunePredictors()
    def chosen = predictors() - finetune
    def needsEmbedding = { name -> registryEntry('predictor', name).needs_embedding }
    def floors = chosen.findAll { !needsEmbedding(it) }
    def groups = [chosen.findAll { needsEmbedding(it) && !onGpu('predictor', it) },
                  chosen.findAll { needsEmbedding(it) && onGpu('predictor', it) }].findAll { it }
    def variants = finetune ? finetuneVariants() : []
    // What applies to a dataset depends on its perturbation type (registry: perturbation_types).
    def floorsFor = { meta -> floors.findAll { appliesTo('predictor', it, meta) } }
    def finetuneFor = { meta -> finetune.findAll { appliesTo('predictor', it, meta) } }
    def tasksPerSplit = { meta ->
        def nSources = builtins.count { appliesTo('gene_embedding', it, meta) } + tables.size() +
                       geneInputs.count { appliesTo('gene_embedding', it[0], meta) }
        (floorsFor(meta) ? 1 : 0) + nSources * groups.size() + finetuneFor(meta).size() * variants.size()
    }

    ch_split_inputs = ch_splits.map { meta, h5ad, pb, by_batch, de, splits, split ->
        [[meta, split], pb, by_batch, splits] }
    ch_floor_tasks = ch_split_inputs
        .filter { key, pb, by_batch, splits -> floorsFor(key[0]) }
        .map { key, pb, by_batch, splits -> [key[0], pb, by_batch, splits, key[1], floorsFor(key[0]), 'none', []] }
    ch_embedding_tasks = ch_split_inputs
        .combine(EMBED_GENES.out.embedding.map { meta, split, source, emb -> [[meta, split], source, emb] }, by: 0)
        .combine(Channel.fromList(groups.collect { [it] }))
        .map { key, pb, by_batch, splits, source, emb, group -> [key[0], pb, by_batch, splits, key[1], group, source, emb] }
    ch_predict = ch_floor_tasks.mix(ch_embedding_tasks)
        .branch { gpu: onGpu('predictor', it[5][0])
                  cpu: true }
    PREDICT(ch_predict.cpu)
    PREDICT_GPU(ch_predict.gpu)

    // Fine-tuned foundation models: one task per split x predictor x variant (process_gpu).
    PREDICT_FINETUNE(
        ch_splits.map { meta, h5ad, pb, by_batch, de, splits, split -> [meta, h5ad, pb, splits, split] }
            .combine(Channel.fromList(checkpoints(finetune, '--predictors', 'predictor')))
            .combine(Channel.fromList(variants))
            .filter { meta, h5ad, pb, splits, split, predictor, dir, variant -> appliesTo('predictor', predictor, meta) },
        optionalFile(params.gene_id_map),
    )

    // Every prediction of a split, gathered as soon as the split's last PREDICT task is done.
    ch_evaluate = PREDICT.out.prediction.mix(PREDICT_GPU.out.prediction, PREDICT_FINETUNE.out.prediction)
        .map { meta, split, files -> [groupKey([meta, split], tasksPerSplit(meta)), files] }
        .groupTuple()
        .map { key, files -> key.getGroupTarget() + [files.flatten().sort { it.name }] }
        .combine(ch_processed.map { meta, h5ad, pb, by_batch, de, splits -> [meta, pb, de, splits] }, by: 0)
    EVALUATE(ch_evaluate)

    CEILING(ch_splits.map { meta, h5ad, pb, by_batch, de, splits, split -> [meta, h5ad, pb, de, splits, split] })

    emit:
    metrics     = EVALUATE.out.metrics.mix(CEILING.out.metrics)  // [meta, metrics.parquet]
    training    = PREDICT_FINETUNE.out.training                  // [meta, training.csv]
    gene_tables = EXTRACT_GENE_EMBEDDINGS.out.table              // [meta, model, gene_table.parquet]
    versions    = EXTRACT_GENE_EMBEDDINGS.out.versions.mix(EMBED_GENES.out.versions, PREDICT.out.versions,
                                                            PREDICT_GPU.out.versions, EVALUATE.out.versions,
                                                            CEILING.out.versions, PREDICT_FINETUNE.out.versions)
}
