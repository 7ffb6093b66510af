/*
 * Cell embeddings from a foundation model (cellplm, geneformer, scgpt, uce) in the model's own container.
 * The checkpoint directory is staged as a `path` (on every executor) and is part of the resume hash.
 * Label process_gpu: routed to GPU nodes with -profile gpu; runs on CPU elsewhere (slowly, correctly).
 */
process EMBED_CELLS_MODEL {
    tag "${meta.id} ${model}"
    label 'process_gpu'

    input:
    tuple val(meta), path(h5ad), path(counts, stageAs: 'input/*'), val(model), path(checkpoint, stageAs: 'checkpoint/*')
    path gene_id_map

    output:
    tuple val(meta), val(model), path("*.embedding.h5ad"), emit: embedding
    path "versions.yml"                                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def dataset_args = task.ext.args2 ?: ''  // the samplesheet row's columns (conf/modules.config)
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    def id_map = gene_id_map ? "--gene-id-map ${gene_id_map}" : ''
    """
    embed_cells.py \\
        --h5ad ${h5ad} \\
        --counts-h5ad ${counts} \\
        --model ${model} \\
        --checkpoint ${checkpoint} \\
        ${id_map} \\
        ${dataset_args} \\
        --out ${prefix}.embedding.h5ad \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    """
    touch ${prefix}.embedding.h5ad
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
