/*
 * The five tasks of the cell-embedding benchmark under each alignment, for one or more embeddings of
 * one dataset (several in one task share its compiled kernels; --cell_eval_group_size).
 */
process EVAL_CELL_EMBEDDINGS {
    tag "${meta.id} ${models.join(',')}"
    label 'process_medium'

    input:
    tuple val(meta), val(models), path(embeddings, stageAs: 'embeddings/*'), path(h5ad), path(splits)
    path(relationships)

    output:
    tuple val(meta), path("*.cell_metrics.csv", arity: '1..*')      , emit: metrics
    tuple val(meta), path("*.cell_perturbations.csv", arity: '1..*'), emit: perturbations
    path "versions.yml"                                              , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def known  = relationships ? "--relationships ${relationships}" : ''
    """
    eval_cell_embeddings.py \\
        ${embeddings.collect { "--embedding ${it}" }.join(' ')} \\
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
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    for model in ${models.join(' ')}; do
        touch ${prefix}.\$model.cell_metrics.csv ${prefix}.\$model.cell_perturbations.csv
    done
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
