process CEILING {
    tag "${meta.id} ${split.task} seed${split.seed} fold${split.fold}"
    label 'process_low'

    input:
    tuple val(meta), path(h5ad), path(pseudobulk), path(de), path(splits), val(split)

    output:
    tuple val(meta), path("*.metrics.parquet"), emit: metrics
    path "versions.yml"                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.ceiling.${split.task}.seed${split.seed}.fold${split.fold}"
    """
    ceiling.py \\
        --h5ad ${h5ad} \\
        --pseudobulk ${pseudobulk} \\
        --de ${de} \\
        --splits ${splits} \\
        --task ${split.task} \\
        --seed ${split.seed} \\
        --fold ${split.fold} \\
        --dataset ${meta.id} \\
        --out ${prefix}.metrics.parquet \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}.ceiling.${split.task}.seed${split.seed}.fold${split.fold}"
    """
    touch ${prefix}.metrics.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
