/*
 * Each dataset checked (VALIDATE_INPUT) before any work, then filtered, normalised, pseudobulked,
 * tested for DE genes and split into folds x seeds over perturbations per task (PREPROCESS).
 */
include { VALIDATE_INPUT } from '../../../modules/local/validate_input/main'
include { PREPROCESS     } from '../../../modules/local/preprocess/main'

workflow PREPARE_DATASETS {
    take:
    ch_datasets  // [meta, h5ad]
    ch_compounds // [meta, compound table] (drug datasets)

    main:
    VALIDATE_INPUT(ch_datasets.join(ch_compounds, remainder: true).map { meta, h5ad, table -> [meta, h5ad, table ?: []] })
    // No dataset is processed until every dataset has passed: a bad one stops the run before any work.
    ch_all_valid = VALIDATE_INPUT.out.json.collect(flat: false)
    PREPROCESS(ch_datasets.join(VALIDATE_INPUT.out.json).combine(ch_all_valid.map { 'all valid' })
        .map { meta, h5ad, json, allValid -> [meta, h5ad, json] })

    ch_processed = PREPROCESS.out.h5ad
        .join(PREPROCESS.out.pseudobulk)
        .join(PREPROCESS.out.pseudobulk_by_batch)
        .join(PREPROCESS.out.de)
        .join(PREPROCESS.out.splits)
    // One entry per dataset x split ([task, seed, fold]), read from the splits PREPROCESS wrote.
    ch_splits = ch_processed.flatMap { meta, h5ad, pb, by_batch, de, splits ->
        splits.splitCsv(header: true).collect { [task: it.task, seed: it.seed as int, fold: it.fold as int] }.unique()
            .collect { split -> [meta, h5ad, pb, by_batch, de, splits, split] }
    }

    emit:
    processed = ch_processed             // [meta, processed h5ad, pseudobulk, pseudobulk by batch, DE, splits]
    splits    = ch_splits                // [meta, processed h5ad, pseudobulk, pseudobulk by batch, DE, splits, split]
    summary   = PREPROCESS.out.summary   // [meta, summary.json]
    versions  = VALIDATE_INPUT.out.versions.mix(PREPROCESS.out.versions)
}
