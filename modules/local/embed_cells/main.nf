/*
 * Cell embeddings of the processed dataset by a baseline embedder (pca, scvi, random). The workflow
 * includes it a second time as EMBED_CELLS_GPU for embedders that train neural networks (scVI) when
 * --gpu is set; conf/base.config gives every *_GPU process the accelerator resources.
 */
process EMBED_CELLS {
    tag "${meta.id} ${model}"
    label 'process_medium'

    input:
    tuple val(meta), path(h5ad), val(model)

    output:
    tuple val(meta), val(model), path("*.embedding.h5ad"), emit: embedding
    path "versions.yml"                                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    """
    embed_cells.py \\
        --h5ad ${h5ad} \\
        --model ${model} \\
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
