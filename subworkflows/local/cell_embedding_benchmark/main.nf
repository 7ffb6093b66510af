/*
 * Cell embeddings (baselines, foundation models, the random floor) scored on the five tasks of the
 * cell-embedding benchmark under each alignment.
 */
include { EMBED_CELLS                  } from '../../../modules/local/embed_cells/main'
include { EMBED_CELLS as EMBED_CELLS_GPU } from '../../../modules/local/embed_cells/main'
include { EMBED_CELLS_MODEL            } from '../../../modules/local/embed_cells_model/main'
include { EVAL_CELL_EMBEDDINGS         } from '../../../modules/local/eval_cell_embeddings/main'
include { cellEmbedders; checkpoints; onGpu; optionalFile; registryEntry } from '../utils_pertprobe_pipeline/main'

workflow CELL_EMBEDDING_BENCHMARK {
    take:
    ch_datasets   // [meta, input h5ad]
    ch_processed  // [meta, processed h5ad, pseudobulk, pseudobulk by batch, DE, splits]

    main:
    def embedders = cellEmbedders()
    ch_embed = ch_processed.map { it[0..1] }
        .combine(Channel.fromList(embedders.findAll { !registryEntry('cell_embedder', it).checkpoint }))
        .branch { gpu: onGpu('cell_embedder', it[2])
                  cpu: true }
    EMBED_CELLS(ch_embed.cpu)
    EMBED_CELLS_GPU(ch_embed.gpu)
    // Foundation models read the raw counts of every input gene (the samplesheet's h5ad) for the processed cells.
    EMBED_CELLS_MODEL(
        ch_processed.map { it[0..1] }.join(ch_datasets)
            .combine(Channel.fromList(checkpoints(embedders.findAll { registryEntry('cell_embedder', it).checkpoint }, '--cell_embedders', 'cell_embedder'))),
        optionalFile(params.gene_id_map),
    )
    ch_embeddings = EMBED_CELLS.out.embedding.mix(EMBED_CELLS_GPU.out.embedding, EMBED_CELLS_MODEL.out.embedding)

    // Embeddings of a dataset scored in fixed groups of --cell_eval_group_size (by sorted embedder
    // name, so a group's members and order never depend on which embedding finished first).
    def names = embedders.sort(false)
    def size = params.cell_eval_group_size as int
    def groupOf = { model -> names.indexOf(model).intdiv(size) }
    def membersOf = { group -> names.subList(group * size, Math.min((group + 1) * size, names.size())).size() }
    ch_eval = ch_embeddings
        .map { meta, model, emb -> [groupKey([meta, groupOf(model)], membersOf(groupOf(model))), model, emb] }
        .groupTuple()
        .map { key, models, embs ->
            def pairs = [models, embs].transpose().sort { it[0] }
            [key.getGroupTarget()[0], pairs.collect { it[0] }, pairs.collect { it[1] }] }
        .combine(ch_processed.map { meta, h5ad, pb, by_batch, de, splits -> [meta, h5ad, splits] }, by: 0)
    EVAL_CELL_EMBEDDINGS(ch_eval, optionalFile(params.known_relationships))

    emit:
    embeddings = ch_embeddings                  // [meta, embedder, embedding h5ad]
    metrics    = EVAL_CELL_EMBEDDINGS.out.metrics  // [meta, cell_metrics.csv]
    versions   = EMBED_CELLS.out.versions.mix(EMBED_CELLS_GPU.out.versions, EMBED_CELLS_MODEL.out.versions,
                                              EVAL_CELL_EMBEDDINGS.out.versions)
}
