/*
 * The software versions of every task collated, and the leaderboards, statistics and HTML report.
 */
include { REPORT } from '../../../modules/local/report/main'

def byName(ch) {
    return ch.collect(sort: { a, b -> a.name <=> b.name })
}

workflow REPORTING {
    take:
    ch_metrics       // [meta, metrics.parquet]: EVALUATE and CEILING
    ch_summaries     // [meta, summary.json]
    ch_pseudobulks   // [meta, pseudobulk.parquet]
    ch_splits        // [meta, splits.csv]
    ch_embeddings    // [meta, embedder, embedding h5ad]
    ch_gene_tables   // [meta, model, gene_table.parquet]
    ch_cell_metrics  // [meta, [cell_metrics.csv, ...]]
    ch_training      // [meta, training.csv]: PREDICT_FINETUNE
    ch_versions      // versions.yml of every task

    main:
    ch_collated = ch_versions
        .map { it.text }
        .unique()
        .collectFile(name: 'collated_versions.yml', sort: true, newLine: false)
    REPORT(
        byName(ch_metrics.map { it[1] }),
        byName(ch_summaries.map { it[1] }),
        byName(ch_pseudobulks.map { it[1] }),
        byName(ch_splits.map { it[1] }),
        byName(ch_embeddings.map { it[2] }),
        byName(ch_gene_tables.map { it[2] }).ifEmpty([]),
        byName(ch_cell_metrics.flatMap { it[1] }),
        byName(ch_training.map { it[1] }).ifEmpty([]),
        ch_collated,
    )

    emit:
    html        = REPORT.out.html
    leaderboard = REPORT.out.leaderboard
}
