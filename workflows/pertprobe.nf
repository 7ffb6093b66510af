/*
 * PERTPROBE: datasets prepared once, then the cell-embedding benchmark and the response benchmark,
 * then one report.
 */
include { PREPARE_DATASETS         } from '../subworkflows/local/prepare_datasets/main'
include { CELL_EMBEDDING_BENCHMARK } from '../subworkflows/local/cell_embedding_benchmark/main'
include { RESPONSE_BENCHMARK       } from '../subworkflows/local/response_benchmark/main'
include { REPORTING                } from '../subworkflows/local/reporting/main'

workflow PERTPROBE {
    take:
    ch_datasets  // [meta, h5ad], one per samplesheet row
    ch_compounds // [meta, compound table], drug rows that name one
    ch_versions  // versions.yml of the initialisation

    main:
    PREPARE_DATASETS(ch_datasets, ch_compounds)
    CELL_EMBEDDING_BENCHMARK(ch_datasets, PREPARE_DATASETS.out.processed)
    RESPONSE_BENCHMARK(ch_datasets, PREPARE_DATASETS.out.processed, PREPARE_DATASETS.out.splits, ch_compounds)
    REPORTING(
        RESPONSE_BENCHMARK.out.metrics,
        PREPARE_DATASETS.out.summary,
        PREPARE_DATASETS.out.processed.map { [it[0], it[2]] },
        PREPARE_DATASETS.out.processed.map { [it[0], it[5]] },
        CELL_EMBEDDING_BENCHMARK.out.embeddings,
        RESPONSE_BENCHMARK.out.gene_tables,
        CELL_EMBEDDING_BENCHMARK.out.metrics,
        RESPONSE_BENCHMARK.out.training,
        ch_versions.mix(PREPARE_DATASETS.out.versions, CELL_EMBEDDING_BENCHMARK.out.versions,
                        RESPONSE_BENCHMARK.out.versions),
    )

    emit:
    html = REPORTING.out.html
}
