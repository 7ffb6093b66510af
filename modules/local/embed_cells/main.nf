process EMBED_CELLS {
    tag "${meta.id} ${model}"
    label 'process_medium'
    container 'ghcr.io/pertprobe/base:0.1.0'

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
