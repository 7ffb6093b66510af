process EVAL_CELL_EMBEDDINGS {
    tag "${meta.id} ${model}"
    label 'process_medium'
    container 'ghcr.io/pertprobe/base:0.1.0'

    input:
    tuple val(meta), val(model), path(embedding), path(h5ad), path(splits)
    path(relationships)

    output:
    tuple val(meta), path("*.cell_metrics.csv")      , emit: metrics
    tuple val(meta), path("*.cell_perturbations.csv"), emit: perturbations
    path "versions.yml"                              , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    def known  = relationships ? "--relationships ${relationships}" : ''
    """
    eval_cell_embeddings.py \\
        --embedding ${embedding} \\
        --h5ad ${h5ad} \\
        --splits ${splits} \\
        --dataset ${meta.id} \\
        ${known} \\
        --prefix ${prefix} \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    """
    touch ${prefix}.cell_metrics.csv ${prefix}.cell_perturbations.csv
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
